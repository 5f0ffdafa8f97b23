"""The paper's experiments as thin command-line programs: ``python -m experiments.<name>``.

* ``imagenet_sweep`` - Table 1 (ImageNet columns) and Fig. 5a: Table 2's encodings on one
  image per synset; resumable, shardable, mergeable.
* ``scaling`` - Table 3, Figs. 3, 4 and 6 on one image.
* ``grid_ablation`` - Fig. 2: the multigrid NTK with and without its grid term, Theorem 1.
* ``ntk_evolution`` - Appendix B, Fig. 11: how far the kernel moves during training.
* ``inspect_grid`` - Appendix C, Figs. 12 and 13: learned grids and ReLU activation regions.
* ``tune`` - Appendix D: Optuna search that writes a config JSON for ``--config-json``.
* ``occupancy`` - Appendix E and Fig. 5b (3-D).
* ``gtk`` - Zhao et al. (CVPR 2024): grid tangent kernels and MulFAGrid.
* ``recipe`` - which reading of the paper's training recipe reproduces its tables.
* ``activations`` - beyond the paper: ReLU / tanh / Gaussian / sine (SIREN) networks with and
  without encodings, each at a fraction of its own critical step (issue 22).
* ``interpolation`` - beyond the paper: Table 3's coarse and fine multigrids with each interpolation
  kernel (nearest, linear, smoothstep, cubic B-spline) at an equal number of nodes (issue 22).

Every program ends in ``sys.exit(main())``; the exit statuses are those of
:func:`experiments._cli.fail`.

See ``experiments/README.md``. The helpers the programs share are in :mod:`experiments._cli`.
"""
