"""Exports to training engines beyond one node: the planner's placement rendered as a verl or
OpenRLHF configuration, or an accelerate multi-node + DeepSpeed/FSDP job script for SLURM.
One module per engine; an export writes files and launches nothing.
"""
