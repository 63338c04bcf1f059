"""Datasets: folders, fingerprint/plan, preprocessing cache, loaders, synthetic phantoms."""
