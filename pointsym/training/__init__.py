"""The one shared trainer: seeding, checkpoint/resume, progress bars, metrics JSON, DDP.

Every model in pointsym trains through :class:`Trainer`. It runs unchanged under
``torchrun --nproc_per_node=N`` (DistributedDataParallel, one process per device).
"""

from pointsym.training._trainer import (
    RESUMABLE_CHANGES,
    TrainConfig,
    Trainer,
    barrier,
    config_changes,
    init_weights,
    is_main_process,
    load_checkpoint,
    move_aside,
    seed_everything,
)

__all__ = ["RESUMABLE_CHANGES", "TrainConfig", "Trainer", "barrier", "config_changes", "init_weights",
           "is_main_process", "load_checkpoint", "move_aside", "seed_everything"]
