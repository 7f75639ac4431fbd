"""Under /api/, every error the API's own handlers did not answer becomes problem+json too.

The API's views answer their errors themselves (``orchestration.api.http``); this catches the rest,
which Django answers before or after them: a path that matches no route (404), a method a route
does not take (405, keeping ``Allow``), and a server error (500, with nothing of its cause).
"""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from orchestration.api.problems import is_problem, problem_response

API_PREFIX = "/api/"

DETAILS = {
    404: "There is no such resource in this API; see /api/v1/docs for its routes.",
    405: "This route does not take this method; see /api/v1/docs for what it takes.",
    500: "The server failed to answer this request; it was logged. Try again, or ask the operators.",
}


def api_problems(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        if not request.path.startswith(API_PREFIX) or response.status_code < 400 or is_problem(response):
            return response
        status = response.status_code
        headers = {"Allow": response["Allow"]} if response.has_header("Allow") else {}
        detail = DETAILS.get(status, "The request could not be answered.")
        return problem_response(request, status=status, detail=detail, headers=headers)

    return middleware
