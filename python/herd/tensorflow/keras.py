"""horovod.tensorflow.keras's spelling: the same module as herd.keras."""

from herd.keras import *  # noqa: F401,F403
from herd.keras import __all__, callbacks  # noqa: F401
