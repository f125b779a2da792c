"""LMDB image data for StyleNAS (installed as ``stylenas.datasets``)."""
