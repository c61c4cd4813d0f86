from django.urls import path

from accounts import views

# Mounted at /accounts/ before django-allauth's own URLs: the same paths for signup and login
# (the subclasses in views.py), and the pages allauth does not have.
urlpatterns = [
    path("signup/", views.SignupView.as_view(), name="signup"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("profile/", views.profile, name="profile"),
    path("delete/", views.account_delete, name="delete"),
]
app_name = "accounts"
