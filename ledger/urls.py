from django.urls import path

from ledger import views

app_name = "ledger"
urlpatterns = [
    path("", views.entries, name="entries"),
    path("what-costs-a-token/", views.costs, name="costs"),
]
