"""The PyBullet pick-and-place harness (imported as ``molmomotion_sim``)."""
