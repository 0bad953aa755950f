"""Fine-tuning: the Lightning module, StyleGAN2 losses, G_ema, few-shot augmentation, diagnostics."""
