"""The planner's one error type: it names the field and what is accepted."""


class PlannerError(ValueError):
    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")
