"""Spreading evaluation jobs over the processes of torchrun or Slurm (one or many nodes).

Every rank builds the same job list. Rank 0 decides which jobs are still to run (see
`sevc.eval.records`) and publishes that plan; then each rank claims the next unclaimed job from
a counter all ranks share, so fast ranks take more jobs, and posts each outcome; rank 0 collects
them all and writes the result file. The counter and the messages go through the key-value store
of PyTorch's `env://` rendezvous (torchrun's, or one rank 0 hosts under `srun`), so no collective
operation ever waits on a slow job and no shared file system is needed for the results.

Launch with `torchrun [--nnodes N --rdzv_endpoint HOST:PORT] --nproc_per_node P test.py ...`, or
with `srun` (one task per GPU) after exporting MASTER_ADDR (the first node) and MASTER_PORT.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterator, List, Optional, Tuple

from ..errors import SevcError

Outcome = Tuple[int, Optional[dict], Optional[str]]  # (job index, record or None, error or None)
_TIMEOUT = timedelta(hours=1)  # how long a rank waits for the store and for rank 0's plan
_POLL_SECONDS = 0.5


def _launch() -> Tuple[int, int, int, int]:
    """(rank, world size, local rank, processes on this node) of the launcher that started this
    process: torchrun (RANK, WORLD_SIZE, ...), an `srun` job step (SLURM_PROCID, ...), or none."""
    env = os.environ
    if "WORLD_SIZE" in env and "RANK" in env:
        return (int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)),
                int(env.get("LOCAL_WORLD_SIZE", 1)))
    if "SLURM_STEP_ID" in env and int(env.get("SLURM_NTASKS", 1)) > 1:
        tasks_here = env.get("SLURM_NTASKS_PER_NODE", "1").split("(")[0]
        return (int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0)),
                int(tasks_here) if tasks_here.isdigit() else 1)
    return 0, 1, 0, 1


@dataclass
class Cluster:
    """This process's place among the evaluation's processes (a single process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    store: Optional[object] = None  # the shared key-value store (torch.distributed.Store)
    _read: int = 0  # outcomes rank 0 has collected

    @classmethod
    def from_env(cls) -> "Cluster":
        """The cluster the launcher set up (see the module docstring); a single process if none."""
        rank, world_size, local_rank, local_world_size = _launch()
        if world_size == 1:
            return cls()
        for variable in ("MASTER_ADDR", "MASTER_PORT"):
            if variable not in os.environ:
                raise SevcError(f"{variable} is not set: launch with torchrun, or export MASTER_ADDR (the first "
                                "node's address) and MASTER_PORT (a free port) before srun")
        import torch.distributed as dist

        store, _, _ = next(dist.rendezvous("env://", rank=rank, world_size=world_size, timeout=_TIMEOUT))
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")  # torchrun's store outlives a restart
        return cls(rank, world_size, local_rank, local_world_size, dist.PrefixStore(f"sevc/{attempt}/", store))

    @property
    def main(self) -> bool:
        """Whether this is rank 0, which reports and writes the results."""
        return self.rank == 0

    def devices(self, device_list: List[str]) -> List[str]:
        """The devices of this rank: one GPU per local rank (if `device_list` holds GPUs)."""
        if self.world_size == 1 or device_list == ["cpu"]:
            return device_list
        return [device_list[self.local_rank % len(device_list)]]

    def share_plan(self, pending: Optional[List[int]], error: Optional[str] = None) -> List[int]:
        """Rank 0 publishes the indices of the jobs to run (or the error that stops the run);
        every rank gets them (a SevcError if rank 0 failed)."""
        if self.store is not None:
            if self.main:
                self.store.set("plan", json.dumps({"pending": pending, "error": error}))
            else:
                plan = json.loads(self.store.get("plan"))
                pending, error = plan["pending"], plan["error"]
        if error is not None:
            raise SevcError(error)
        return pending

    def claims(self, count: int) -> Iterator[int]:
        """Positions 0..count-1 in the plan of the jobs this rank runs, claimed one at a time."""
        if self.store is None:
            yield from range(count)
            return
        while True:
            position = self.store.add("next", 1) - 1
            if position >= count:
                return
            yield position

    def post(self, outcome: Outcome) -> None:
        """Send a job's outcome to rank 0 (ranks other than 0)."""
        number = self.store.add("posted", 1) - 1
        self.store.set(f"outcome/{number}", json.dumps(outcome))

    def arrived(self) -> Iterator[Outcome]:
        """The outcomes other ranks have posted since the last call (rank 0; does not wait)."""
        while self.store is not None and self.store.check([f"outcome/{self._read}"]):
            index, record, error = json.loads(self.store.get(f"outcome/{self._read}"))
            self._read += 1
            yield index, record, error

    def wait(self) -> None:
        """Pause before looking for outcomes again."""
        time.sleep(_POLL_SECONDS)
