"""Error types of the toy world. Every message names the input at fault and the fix."""


class ToyWorldError(ValueError):
    """Base class: a bad input given to the toy world."""


class IdentityError(ToyWorldError):
    """An unknown domain, or an identity id outside the world's range."""


class SceneError(ToyWorldError):
    """A scene factor with a value the world does not know."""


class RenderError(ToyWorldError):
    """A render request that cannot be drawn (size, two-subject placement)."""


class DatasetError(ToyWorldError):
    """A dataset request that cannot be written (empty ranges, an existing non-empty folder)."""


class ScorerError(ToyWorldError):
    """A scoring model file that cannot be loaded, or images of the wrong shape."""


class ExperimentError(ToyWorldError):
    """A stage asked for before the stages it needs, or published weights that are incomplete."""


class GroundingError(ToyWorldError):
    """A caption whose grounded words (grounding.py) it does not hold, or region masks that do not fit."""
