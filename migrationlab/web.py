"""The two endpoints every project serves (its ROOT_URLCONF): the read and the write the demo watches.

GET /list_large/            10 rows of the large table (from a random id on) and its row count (planner estimate:
                            an exact count(*) of 10M rows would cost more than the probe it is part of)
GET|POST /update_order/     updates one row of the large table (random existing id, or ?id=N), returns it

Every answer is JSON, errors included: 400 bad input, 404 no such row, 405 wrong method, 503 when the database
gave up on the query (the statement timeout hit while the request waited behind a migration's lock).
"""

from __future__ import annotations

import random
from functools import wraps

from django.apps import apps
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models.functions import Now
from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

PAGE_SIZE = 10


def large_model():
    return apps.get_model(settings.MIGRATIONLAB_LARGE_MODEL)


def error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def json_endpoint(*methods: str):
    """Allow `methods` only, and turn a database failure into a 503 JSON answer."""

    def decorate(view):
        @csrf_exempt
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if request.method not in methods:
                response = error(405, f"method {request.method} not allowed; use {' or '.join(methods)}")
                response["Allow"] = ", ".join(methods)
                return response
            try:
                return view(request, *args, **kwargs)
            except DatabaseError as failure:
                first_line = str(failure).strip().splitlines()[0] if str(failure).strip() else type(failure).__name__
                return error(503, f"database unavailable: {first_line}")

        return wrapper

    return decorate


def estimated_row_count(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [table])
        (estimate,) = cursor.fetchone()
    return max(estimate, 0)


def random_existing_id(model) -> int | None:
    bounds = model.objects.order_by("pk").values_list("pk", flat=True)
    first, last = bounds.first(), bounds.last()
    if first is None:
        return None
    pick = random.randint(first, last)
    return bounds.filter(pk__gte=pick).first()


def parse_id(raw: str) -> int:
    if not raw.strip().isdigit():
        raise ValueError(f"id must be a positive whole number, got '{raw}'")
    return int(raw)


@json_endpoint("GET")
def list_large(request):
    model = large_model()
    start = random_existing_id(model)
    rows = list(model.objects.filter(pk__gte=start or 0).order_by("pk").values()[:PAGE_SIZE])
    return JsonResponse(
        {
            "table": model._meta.db_table,
            "count": estimated_row_count(model._meta.db_table),
            "count_is_estimate": True,
            "rows": rows,
        }
    )


@json_endpoint("GET", "POST")
def update_order(request):
    model = large_model()
    raw_id = request.POST.get("id") or request.GET.get("id")
    if raw_id is None:
        row_id = random_existing_id(model)
        if row_id is None:
            return error(404, f"{model._meta.db_table} is empty; seed it first")
    else:
        try:
            row_id = parse_id(raw_id)
        except ValueError as bad:
            return error(400, str(bad))
    updated = model.objects.filter(pk=row_id).update(**{settings.MIGRATIONLAB_WRITE_FIELD: Now()})
    if not updated:
        return error(404, f"no row with id {row_id} in {model._meta.db_table}")
    return JsonResponse({"updated": model.objects.values().get(pk=row_id)})


def not_found(request, exception=None):
    return error(404, f"no endpoint at {request.path}; try /list_large/ or /update_order/")


def server_error(request):
    return error(500, "internal error; see the server log")


urlpatterns = [
    path("list_large/", list_large, name="list_large"),
    path("update_order/", update_order, name="update_order"),
]
handler404 = not_found
handler500 = server_error
