"""One base exception for the project; third-party errors are translated where they enter."""


class SearchJobsError(Exception):
    """Base of every error searchjobs raises on purpose."""

    #: stable machine-readable code, used in API error bodies and job `error` fields
    code = "internal_error"

    def __init__(self, message: str = "", *, code: str | None = None):
        super().__init__(message or self.__class__.__doc__ or self.code)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class ConfigError(SearchJobsError):
    """The configuration is invalid."""

    code = "config_error"


class ValidationError(SearchJobsError):
    """Input was rejected; nothing was changed."""

    code = "invalid_request"

    def __init__(self, message: str, *, code: str | None = None, status: int = 400, field: str | None = None):
        super().__init__(message, code=code)
        self.status = status
        self.field = field


class NotFound(SearchJobsError):
    """The thing asked for does not exist (or is not visible to the caller)."""

    code = "not_found"


class Conflict(SearchJobsError):
    """A version-checked write lost a race; the caller should re-read."""

    code = "conflict"


class DependencyUnavailable(SearchJobsError):
    """Postgres or Redis cannot be reached right now; retry later."""

    code = "service_unavailable"
