"""The training and evaluation loop every stage shares, one concept per module: the device and seeds
(`device`), batch streams and augmentation (`batches`), the optimisers (`optimizers`), learning-rate
schedules (`schedules`) and the loop itself (`loop`)."""
