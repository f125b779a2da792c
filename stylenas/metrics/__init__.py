"""GAN metrics: FID Inception network, statistics, Frechet distance, Inception Score."""
