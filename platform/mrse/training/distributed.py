"""Sharded training with TorchRec: embedding tables placed table-wise across processes.

Started by ``torchrun --nproc_per_node N`` (gloo backend; set ``OMP_NUM_THREADS=1`` per worker on
CPU, or the workers oversubscribe the cores and run ~70x slower). Sparse tables are sharded by
``DistributedModelParallel`` and updated by the fused optimizer inside the backward pass; dense
layers are replicated, their gradients averaged with an all-reduce. The saved checkpoint is a
plain, unsharded state dict: the same model a single process trains and serves.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from mrse.models.config import ModelConfig
from mrse.models.two_tower import MRSEModel

logger = logging.getLogger(__name__)


@dataclass
class Parallel:
    """Where this process stands: rank, world size and (when sharded) the DMP wrapper."""

    rank: int = 0
    world: int = 1
    dmp: torch.nn.Module | None = None
    plan: dict[str, int] = field(default_factory=dict)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        return self.world > 1


def init_from_env() -> Parallel:
    """Join the process group ``torchrun`` describes in the environment (or run alone)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Parallel()
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return Parallel(rank=dist.get_rank(), world=dist.get_world_size())


def table_names(model: MRSEModel) -> list[str]:
    return [
        t.name
        for ebc in (model.item_tower.ebc, model.query_tower.ebc)
        for t in ebc.embedding_bag_configs()
    ]


def shard_model(config: ModelConfig, sparse_lr: float, parallel: Parallel) -> MRSEModel:
    """Build the model with its tables sharded table-wise; returns the (sharded) core module."""
    from fbgemm_gpu.split_embedding_configs import EmbOptimType
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
    from torchrec.distributed.model_parallel import DistributedModelParallel
    from torchrec.distributed.planner import (
        EmbeddingShardingPlanner,
        ParameterConstraints,
        Topology,
    )
    from torchrec.distributed.types import ShardingEnv, ShardingType

    model = MRSEModel(config, device=torch.device("meta"))
    sharder = EmbeddingBagCollectionSharder(
        fused_params={"optimizer": EmbOptimType.EXACT_ADAGRAD, "learning_rate": sparse_lr}
    )
    constraints = {
        name: ParameterConstraints(sharding_types=[ShardingType.TABLE_WISE.value])
        for name in table_names(model)
    }
    planner = EmbeddingShardingPlanner(
        topology=Topology(world_size=parallel.world, compute_device="cpu"),
        constraints=constraints,
    )
    pg = dist.GroupMember.WORLD
    plan = planner.collective_plan(model, [sharder], pg)
    dmp = DistributedModelParallel(
        model,
        env=ShardingEnv.from_process_group(pg),
        device=torch.device("cpu"),
        plan=plan,
        sharders=[sharder],
        init_data_parallel=False,
    )
    parallel.dmp = dmp
    for module_plan in plan.plan.values():
        for table, spec in module_plan.items():
            parallel.plan[table] = int(spec.ranks[0]) if spec.ranks else -1
    core: MRSEModel = dmp.module
    # Replicated layers must start identical on every rank.
    for p in dense_parameters(core):
        dist.broadcast(p.data, src=0)
    if parallel.is_main:
        logger.info("table-wise sharding plan (table -> rank): %s", parallel.plan)
    return core


def dense_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Parameters outside the embedding tables (replicated across ranks)."""
    return [p for n, p in model.named_parameters() if ".ebc." not in f".{n}"]


def average_dense_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    """All-reduce (mean) the gradients of replicated parameters; absent gradients count as 0."""
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)
        p.grad /= world


def full_state_dict(parallel: Parallel) -> dict[str, torch.Tensor]:
    """Unsharded state dict on rank 0 (empty elsewhere). Collective: every rank must call it."""
    from torch.distributed._shard.sharded_tensor import ShardedTensor

    assert parallel.dmp is not None
    out: dict[str, torch.Tensor] = {}
    for key, value in parallel.dmp.state_dict().items():
        if isinstance(value, ShardedTensor):
            full = torch.empty(value.size()) if parallel.is_main else None
            value.gather(dst=0, out=full)
            if parallel.is_main:
                out[key] = full
        elif parallel.is_main:
            out[key] = value.detach().clone()
    return out


def agree(flag: bool, parallel: Parallel) -> bool:
    """Rank 0's decision, on every rank (so all ranks stop at the same epoch)."""
    if not parallel.sharded:
        return flag
    t = torch.tensor([1 if flag else 0])
    dist.broadcast(t, src=0)
    return bool(t.item())
