"""Where each dataset comes from: the loaders of the dataset registry, torchvision's classes among them."""
