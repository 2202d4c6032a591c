"""Training a model: a classifier by its dataset's recipe, and the attacker's training of a backdoored
model (its budget, its surrogate, SBL's two tasks); SAM's ascent step, shared with FT-SAM."""
