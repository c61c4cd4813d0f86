from django.urls import path

from payments import views

app_name = "payments"
urlpatterns = [
    path("", views.buy, name="buy"),
    path("done/", views.done, name="done"),
    path("done/<uuid:purchase_id>/status/", views.status, name="status"),
    path("fake/<str:session_id>/", views.fake_checkout, name="fake_checkout"),
]
