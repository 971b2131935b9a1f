"""``python -m crd_edge``: the same command line as the ``crd-edge`` script (for environments
where the script is not on PATH, such as a container's system Python)."""

from crd_edge.cli import main

if __name__ == "__main__":
    main()
