"""Datasets as the pipeline holds them, and what is known of each before any of its files is read."""
