"""accelerate multi-node (SFT, RM, DPO family, TRL's GRPO/RLOO): the planner's training placement
as accelerate.yaml (num_machines, num_processes over all nodes, DeepSpeed ZeRO + offload with the
standard multi-node launcher, or FSDP2), launch_node.sh (one `accelerate launch` per node, its
machine rank from $SLURM_NODEID or $NODE_RANK read on that node), job.sbatch (srun starts
launch_node.sh once per node) and nodes.txt (the same commands for clusters without SLURM).

accelerate 1.15's multi-node launch fails without --machine_rank, so every per-node command
passes it; under SLURM it is $SLURM_NODEID, which srun sets differently on each node: it is read
inside launch_node.sh (which runs on the node), never expanded by the shell that submits the job.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import yaml

from runners.rundir.spec import RunSpec

DEFAULT_PORT = 29500

NCCL_NOTES = """\
# NCCL settings (uncomment what your cluster needs):
#   NCCL_SOCKET_IFNAME=<iface>   the interface the nodes reach each other on (e.g. ib0, eth0)
#   NCCL_IB_HCA=<mlx5_0,...>     InfiniBand adapters to use; NCCL_IB_DISABLE=1 forces TCP
#   NCCL_DEBUG=WARN              INFO prints the transport chosen (IB/RoCE/socket) at start-up
#   NCCL_ASYNC_ERROR_HANDLING=1  fail fast on a lost peer instead of hanging (TORCH_NCCL_ in torch >= 2.2)
#   GLOO_SOCKET_IFNAME=<iface>   the same for gloo (CPU collectives, and DeepSpeed's rendezvous)
"""


def accelerate_yaml(placement, spec: RunSpec, *, main_process_ip: str, main_process_port: int) -> dict[str, Any]:
    """accelerate's config for the placement: every node gets the same file; only --machine_rank
    differs per node (given on the command line)."""
    hp = spec.hparams
    fsdp = placement.engine == "fsdp" and placement.zero > 0
    cfg: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "debug": False,
        "distributed_type": "MULTI_GPU" if placement.zero == 0 else ("FSDP" if fsdp else "DEEPSPEED"),
        "downcast_bf16": "no",
        "machine_rank": 0,
        "main_process_ip": main_process_ip,
        "main_process_port": main_process_port,
        "main_training_function": "main",
        "mixed_precision": "bf16",
        "num_machines": placement.nodes,
        "num_processes": placement.nodes * placement.gpus_per_node,
        "rdzv_backend": "static",
        "same_network": True,
        "tpu_env": [],
        "tpu_use_cluster": False,
        "tpu_use_sudo": False,
        "use_cpu": False,
    }
    if cfg["distributed_type"] == "DEEPSPEED":
        off = placement.offload
        cfg["deepspeed_config"] = {
            "deepspeed_multinode_launcher": "standard",  # torch.distributed per node, no pdsh/hostfile
            "zero_stage": placement.zero,
            "offload_optimizer_device": "cpu" if off in ("optimizer", "params") else "none",
            "offload_param_device": "cpu" if off == "params" else "none",
            "zero3_init_flag": placement.zero == 3,
            "gradient_accumulation_steps": int(hp.get("gradient_accumulation_steps", 1)),
            "gradient_clipping": float(hp.get("max_grad_norm", 1.0)),
        }
        if placement.zero == 3:
            cfg["deepspeed_config"]["zero3_save_16bit_model"] = True
    elif fsdp:
        cfg["fsdp_config"] = {
            "fsdp_version": 2,
            "fsdp_reshard_after_forward": placement.zero == 3,
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_state_dict_type": "SHARDED_STATE_DICT",
            "fsdp_cpu_ram_efficient_loading": False,
            "fsdp_offload_params": placement.offload in ("optimizer", "params"),
            "fsdp_activation_checkpointing": spec.gradient_checkpointing,
        }
    return cfg


def launch_node_script(spec: RunSpec, folder: Path, spec_path: Path, repo: Path, python: str) -> str:
    """One node's launch. Its rank is read on the node: $SLURM_NODEID under srun, else $NODE_RANK.
    MAIN_PROCESS_IP / MAIN_PROCESS_PORT override the YAML's (the sbatch script sets them);
    ALIGNPLAN_ACCELERATE_CONFIG overrides the config file (a test runs a CPU variant this way)."""
    q = shlex.quote
    return f"""#!/usr/bin/env bash
# One accelerate launch on this node (written by alignplan for accelerate 1.15.0).
# Run once per node: under SLURM, job.sbatch's srun does; elsewhere, see nodes.txt.
set -euo pipefail
{NCCL_NOTES}
export_dir={q(str(folder))}
config="${{ALIGNPLAN_ACCELERATE_CONFIG:-$export_dir/accelerate.yaml}}"
rank="${{SLURM_NODEID:-${{NODE_RANK:?set NODE_RANK (0 on the main node) or run under srun}}}}"
main_ip="${{MAIN_PROCESS_IP:-$(python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["main_process_ip"])' "$config")}}"
main_port="${{MAIN_PROCESS_PORT:-{DEFAULT_PORT}}}"
cd {q(str(repo))}
export PYTHONPATH={q(str(repo))}${{PYTHONPATH:+:$PYTHONPATH}}
exec {q(python)} -m accelerate.commands.launch --config_file "$config" \\
  --machine_rank "$rank" --main_process_ip "$main_ip" --main_process_port "$main_port" \\
  -m runners.recipes.{spec.method} --spec {q(str(spec_path))} "$@"
"""


def sbatch_script(placement, folder: Path, job_name: str) -> str:
    """SLURM: one task per node, each running launch_node.sh on its node; the main node's address
    is the first host of the allocation."""
    q = shlex.quote
    host_ram_gb = max(1, -(-placement.host_bytes_per_node // 10**9) + 32)  # offloaded states + 32 GB for the rest
    return f"""#!/usr/bin/env bash
#SBATCH --job-name={job_name}
#SBATCH --nodes={placement.nodes}
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node={placement.gpus_per_node}
#SBATCH --cpus-per-task=16
#SBATCH --mem={host_ram_gb}G
#SBATCH --output={folder}/slurm-%j.out
# alignplan export: {placement.nodes} x {placement.gpus_per_node} {placement.gpu}; the planner's host RAM per node
# is {placement.host_bytes_per_node / 2**30:.1f} GiB (offloaded states), hence --mem above.
set -euo pipefail
{NCCL_NOTES}
MAIN_PROCESS_IP="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
MAIN_PROCESS_PORT={DEFAULT_PORT}
export MAIN_PROCESS_IP MAIN_PROCESS_PORT
# srun starts launch_node.sh once on every node; it reads $SLURM_NODEID there, so each node gets its own rank.
srun --nodes={placement.nodes} --ntasks-per-node=1 bash {q(str(folder / 'launch_node.sh'))}
"""


def nodes_txt(placement, folder: Path, main_ip: str) -> str:
    lines = [f"# Without SLURM: run one line on each node ({placement.nodes} nodes), the rank-0 line on "
             f"{main_ip} (the main process).",
             "# Same repository path and Python environment on every node."]
    for rank in range(placement.nodes):
        lines.append(f"NODE_RANK={rank} MAIN_PROCESS_IP={main_ip} bash {shlex.quote(str(folder / 'launch_node.sh'))}")
    return "\n".join(lines) + "\n"


def render(placement, spec: RunSpec, folder: Path, *, spec_path: Path, repo: Path, python: str = "python3",
           main_process_ip: str = "127.0.0.1") -> list[str]:
    cfg = accelerate_yaml(placement, spec, main_process_ip=main_process_ip, main_process_port=DEFAULT_PORT)
    (folder / "accelerate.yaml").write_text(yaml.safe_dump(cfg, sort_keys=True), encoding="utf-8")
    (folder / "launch_node.sh").write_text(launch_node_script(spec, folder, spec_path, repo, python), encoding="utf-8")
    (folder / "job.sbatch").write_text(sbatch_script(placement, folder, f"alignplan-{spec.method}"), encoding="utf-8")
    (folder / "nodes.txt").write_text(nodes_txt(placement, folder, main_process_ip), encoding="utf-8")
    for name in ("launch_node.sh", "job.sbatch"):
        (folder / name).chmod(0o755)
    return ["accelerate.yaml", "launch_node.sh", "job.sbatch", "nodes.txt"]


# --- checks ------------------------------------------------------------------------------------------


def check_yaml_loads(path: Path) -> str:
    """accelerate's own loader (what `accelerate launch --config_file` calls): an unknown key fails."""
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(path))
    return f"accelerate {__import__('accelerate').__version__}: {cfg.distributed_type}, {cfg.num_machines} machines"


def check_shellcheck(*paths: Path) -> str:
    import shutil
    import subprocess

    exe = shutil.which("shellcheck")
    if exe is None:
        raise FileNotFoundError("shellcheck is not installed (apt-get install shellcheck)")
    proc = subprocess.run([exe, "-s", "bash", *map(str, paths)], capture_output=True, text=True, timeout=60)
    if proc.returncode:
        raise ValueError(proc.stdout.strip()[:2000])
    return f"shellcheck clean: {', '.join(p.name for p in paths)}"
