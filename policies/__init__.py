"""Goal-conditioned manipulation policies (behaviour cloning) and the success-rate experiments."""
