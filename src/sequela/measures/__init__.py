"""Backdoor sequela: how a model's vulnerability to other attacks changes when its backdoor is removed.

- `membership`: threshold-free metric membership-inference attacks (loss, confidence, entropy,
  modified entropy) on the model's own clean training images against the membership holdout;
- `shadow`: the shadow-model membership attack (ML-Doctor style: sorted top-k posteriors, attack MLP);
- `reinject`: the retuning attack, fine-tuning on a little clean data plus k poisoned samples;
- `robustness`: accuracy under an L-inf PGD attack;
- `roc`: AUC and TPR at a fixed FPR, shared by the membership attacks.
Each function takes plain arguments (models, splits, numbers); the measure stage reads params.yaml.
"""
