# docs: the design and subsystem pages, shipped in the tarball.
EXTRA_DIST += docs/design.md
