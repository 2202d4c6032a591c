"""sequela: backdoors, their removal by (super-)fine-tuning, and the sequela the removal leaves."""
