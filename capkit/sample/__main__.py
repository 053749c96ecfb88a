"""``python -m capkit.sample [OUT_DIR] [--seed N] [--n-per-category N] [--size N]``: generate the dataset when
missing or different (`dataset.main`)."""

from capkit.sample.dataset import main

if __name__ == "__main__":
    main()
