"""The two endpoints every project serves (its ROOT_URLCONF): the read and the write the demo watches.

GET /list_large/            10 rows of the large table (from a random id on) and its row count (planner estimate:
                            an exact count(*) of 10M rows would cost more than the probe it is part of). In a
                            project whose scenario.toml names a lookup_field (e.g. email), ?email=... returns the
                            rows with exactly that value instead: the lookup an index is built for.
GET|POST /update_order/     updates one row of the large table and returns it: the row the request names, else a
                            random existing one. A request names a row in the query string (?id=12) or, for a
                            POST, in its body: form data (id=12) or JSON ({"id": 12}). A body it cannot read
                            (another type, chunked, fields other than id) or two different ids are refused, never
                            ignored: ignoring them would update a random row.
                            With ?create=1 it inserts a row instead: a copy of the row named (else a random one),
                            with the fields the running release's model knows; the database fills in the others (a
                            release that no longer knows a column inserts without it: scenario.toml's write_query).
Both return a row's fields: all of the model's, or those scenario.toml's served_fields names (a project whose steps
add columns: the release serving while they run does not read them yet).

In a project whose large table refers to another one (scenario.toml's referenced_table, e.g. customers for a
foreign key lesson), the same read and write on that table:
GET /list_referenced/       10 rows of the referenced table (from a random id on) and its estimated row count;
GET|POST /update_referenced/  sets its write_field to now() on one row, named as for /update_order/.
Elsewhere they answer 404.

Every answer is JSON, errors included: 400 bad input, 404 no such row or endpoint, 405 wrong method, 411 a chunked
body, 413 a body too large, 415 a body neither form data nor JSON, 503 when the database gave up on the query (the
statement timeout hit while the request waited behind a migration's lock). Django's own errors (a Host not in
ALLOWED_HOSTS, 403, 500) come through the handlers at the bottom of this file, also as JSON.
"""

from __future__ import annotations

import json
import random
import re
from functools import wraps

from django.apps import apps
from django.conf import settings
from django.core.exceptions import DisallowedHost, RequestDataTooBig, TooManyFieldsSent, ValidationError
from django.db import DatabaseError, InterfaceError, connection
from django.db.models.functions import Now
from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

PAGE_SIZE = 10
LARGEST_ID = 2**63 - 1  # ids are bigint
# ASCII digits only: str.isdigit() and int() also take other scripts' digits ('١٢' is 12) and '²'.
ID_FORMAT = re.compile(r"[0-9]{1,19}")
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class Refused(Exception):
    """The request cannot be served as it is: answered with `status` and the message as JSON."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def large_model():
    return apps.get_model(settings.MIGRATIONLAB_LARGE_MODEL)


def served_fields() -> list[str]:
    """The fields the endpoints read and return (scenario.toml's served_fields); empty: all of the model's."""
    return settings.MIGRATIONLAB_SERVED_FIELDS


def error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def json_endpoint(*methods: str):
    """Allow `methods` only; turn a refused request into its 4xx and a database failure into a 503, as JSON."""

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
            except Refused as refused:
                return error(refused.status, str(refused))
            except (DatabaseError, InterfaceError) as failure:
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


def quoted(value) -> str:
    """A client's value, quoted for an error message and cut short."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_id(raw) -> int:
    """An id as the request wrote it (a string, or a number in JSON) -> an id from 1 to LARGEST_ID."""
    text = str(raw) if type(raw) is int else raw  # a JSON number; not True/False, which are ints too
    if not isinstance(text, str) or not ID_FORMAT.fullmatch(text) or not 1 <= int(text) <= LARGEST_ID:
        raise Refused(400, f"id must be a whole number from 1 to {LARGEST_ID} in digits 0-9, got {quoted(raw)}")
    return int(text)


def one_id(values: list, where: str) -> int | None:
    if len(values) > 1:
        raise Refused(400, f"{where} names id {len(values)} times; name it once")
    return parse_id(values[0]) if values else None


def only_id(fields, where: str) -> None:
    """A body names the row and nothing else: a misspelt field would otherwise update a random row."""
    others = sorted(set(fields) - {"id"})
    if others:
        raise Refused(400, f"{where} may hold only id; got {', '.join(others)}")


def id_in_json(body: bytes) -> int | None:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: arrays nested deep enough to exhaust the parser
        raise Refused(400, "the body is not valid JSON") from None
    if not isinstance(document, dict):
        raise Refused(400, 'a JSON body must be an object, e.g. {"id": 12}')
    only_id(document, "the JSON body")
    return parse_id(document["id"]) if "id" in document else None


def id_in_body(request) -> int | None:
    """The id a request body names: form data or a JSON object. None if there is no body or it names no id."""
    if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        # Django reads Content-Length bytes, so it would see a chunked body as empty: refuse rather than ignore it.
        raise Refused(411, "send the body with a Content-Length, not chunked")
    if not request.body:  # a body larger than DATA_UPLOAD_MAX_MEMORY_SIZE raises here: 413 (bad_request below)
        return None
    if request.method != "POST":
        raise Refused(400, f"a {request.method} request takes no body; POST it, or put the id in the query string")
    if request.content_type == "application/json":
        return id_in_json(request.body)
    if request.content_type in FORM_TYPES:
        only_id(request.POST, "the form")
        return one_id(request.POST.getlist("id"), "the form")
    raise Refused(415, f"cannot read a body of type '{request.content_type or 'unnamed'}'; "
                       "send application/json or form data")


def requested_id(request) -> int | None:
    """The row the request names, in its query string or its body; None if it names none."""
    in_query = one_id(request.GET.getlist("id"), "the query string")
    in_body = id_in_body(request)
    if None not in (in_query, in_body) and in_query != in_body:
        raise Refused(400, f"the query string names id {in_query} and the body id {in_body}; name one row")
    return in_body if in_query is None else in_query


def referenced_model():
    """The model of the table the large one refers to; a project without one answers 404."""
    if not settings.MIGRATIONLAB_REFERENCED_MODEL:
        raise Refused(404, "this project has no referenced table; try /list_large/ or /update_order/")
    return apps.get_model(settings.MIGRATIONLAB_REFERENCED_MODEL)


def from_a_random_row(model):
    start = random_existing_id(model)
    return model.objects.filter(pk__gte=start or 0)


def listing(model, page, fields) -> JsonResponse:
    """The first rows of `page` by id, and the table's estimated size."""
    rows = list(page.order_by("pk").values(*fields)[:PAGE_SIZE])
    return JsonResponse(
        {
            "table": model._meta.db_table,
            "count": estimated_row_count(model._meta.db_table),
            "count_is_estimate": True,
            "rows": rows,
        }
    )


RANDOM_ROW_TRIES = 5


def update_one(request, model, fields) -> JsonResponse:
    """Set the write_field of the row the request names (else a random one) to now(); the row.

    A random row can be deleted between the pick and the UPDATE (a retention job deleting old rows, or the UPDATE
    waited on the row lock of the DELETE that removed it): then another one is picked, a few times, since the
    request asked for any row. A row the request named and that is gone is a 404."""
    named = requested_id(request)
    for _ in range(1 if named is not None else RANDOM_ROW_TRIES):
        row_id = named if named is not None else random_existing_id(model)
        if row_id is None:
            return error(404, f"{model._meta.db_table} is empty; seed it first")
        updated = model.objects.filter(pk=row_id).update(**{settings.MIGRATIONLAB_WRITE_FIELD: Now()})
        # .first(), not .get(): the row may be deleted between the two statements, and that is a 404, not a 500.
        row = model.objects.filter(pk=row_id).values(*fields).first() if updated else None
        if row is not None:
            return JsonResponse({"updated": row})
    return error(404, f"no row with id {row_id} in {model._meta.db_table}")


def create_one(request, model, fields) -> JsonResponse:
    """Insert a copy of the row the request names (else a random one), of the fields the model knows; the row."""
    row_id = requested_id(request) or random_existing_id(model)
    known = [field.attname for field in model._meta.concrete_fields if not field.primary_key]
    source = model.objects.filter(pk=row_id).values(*known).first() if row_id else None
    if source is None:
        return error(404, f"no row with id {row_id} in {model._meta.db_table} to copy" if row_id
                     else f"{model._meta.db_table} is empty; seed it first")
    created = model.objects.create(**source)
    return JsonResponse({"created": model.objects.filter(pk=created.pk).values(*fields).first()})


def wants_create(request) -> bool:
    values = request.GET.getlist("create")
    if values not in ([], ["1"]):
        raise Refused(400, f"create must be 1 (insert a row) or absent (update one), got {quoted(values[-1])}")
    return bool(values)


@json_endpoint("GET")
def list_large(request):
    model = large_model()
    lookup = settings.MIGRATIONLAB_LOOKUP_FIELD
    if lookup and lookup in request.GET:  # the exact lookup an index lesson is about, e.g. ?email=...
        try:
            page = model.objects.filter(**{lookup: request.GET[lookup]})
        except (ValueError, ValidationError) as bad:  # e.g. ?device_id=abc for an integer column
            raise Refused(400, f"{lookup}={quoted(request.GET[lookup])}: not a value of that column") from bad
    else:
        page = from_a_random_row(model)
    return listing(model, page, served_fields())


@json_endpoint("GET", "POST")
def update_order(request):
    if wants_create(request):
        return create_one(request, large_model(), served_fields())
    return update_one(request, large_model(), served_fields())


@json_endpoint("GET")
def list_referenced(request):
    model = referenced_model()
    return listing(model, from_a_random_row(model), ())


@json_endpoint("GET", "POST")
def update_referenced(request):
    return update_one(request, referenced_model(), ())


# Django's own error answers (used with DEBUG off; with DJANGO_DEBUG=1 Django shows its HTML debug pages instead).

def bad_request(request, exception=None):
    """What Django itself refuses before or while a view reads the request: a Host not in ALLOWED_HOSTS, a body
    over DATA_UPLOAD_MAX_MEMORY_SIZE, too many fields, a malformed multipart body."""
    if isinstance(exception, DisallowedHost):
        return error(400, "this server does not answer to that Host header (the allowed ones: DJANGO_ALLOWED_HOSTS)")
    if isinstance(exception, RequestDataTooBig):
        return error(413, f"the body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes")
    if isinstance(exception, TooManyFieldsSent):
        return error(400, f"more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} fields in the query string or body")
    return error(400, "bad request: the request could not be read")  # e.g. a malformed multipart body


def forbidden(request, exception=None):
    return error(403, "forbidden")


def not_found(request, exception=None):
    return error(404, f"no endpoint at {request.path}; try /list_large/ or /update_order/")


def server_error(request):
    return error(500, "internal error; see the server log")


urlpatterns = [
    path("list_large/", list_large, name="list_large"),
    path("update_order/", update_order, name="update_order"),
    path("list_referenced/", list_referenced, name="list_referenced"),
    path("update_referenced/", update_referenced, name="update_referenced"),
]
handler400 = bad_request
handler403 = forbidden
handler404 = not_found
handler500 = server_error
