"""Credentials come from KUBECONFIG as the process has it when the manager is made (stand-in API server)."""

from __future__ import annotations

import kubernetes  # imported at collection, before KUBECONFIG names the stand-in, as in a user's script

from clipper.admin.managers.kubernetes import KubernetesContainerManager
from tests.kubernetes.conftest import Standin

assert kubernetes.__version__


def test_standin_kubeconfig_set_after_the_client_was_imported_is_used(standin_api: Standin) -> None:
    manager = KubernetesContainerManager(cluster_name="creds")  # no kubeconfig argument: KUBECONFIG
    assert manager.get_num_frontends() == 0  # it reached the stand-in, where no such cluster runs
