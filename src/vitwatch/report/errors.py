"""The one error of the report build."""


class ReportError(RuntimeError):
    """The build stopped; the message says where and why."""
