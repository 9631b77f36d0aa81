"""The MRSE two-tower model: LMoE item and query towers over frozen encoder and sparse features."""
