#!/usr/bin/env bash
# mpiexec settings for running herd's demos and tests on this machine: root is allowed (CI and
# containers run as root), and more ranks than cores are allowed.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
