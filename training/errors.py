"""Error types of the trainer. Every message names the input at fault (a flag, a file) and the fix."""
from ..nested_attention_core.errors import NestedAttentionError


class TrainingConfigError(NestedAttentionError):
    """A flag has a bad value, or flags contradict each other or the model files."""


class TrainingDataError(NestedAttentionError):
    """The data folder cannot be trained on: empty, a caption without its subject word, a bad mask."""


class ResumeError(NestedAttentionError):
    """A training state file cannot be resumed: unreadable, or made for another run."""


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the last good state was kept."""


class OutputWriteError(NestedAttentionError):
    """A file cannot be written into the output folder (a full disk, a failing file system); the previous files
    are kept whole."""
