"""Training: the objects a run trains on, the loop, the run record, the Robust Training
Strategy's prompt mixture, SAM's interactive simulation, and the losses."""
