"""kubeadm's config API versions by release (util/config/common.go validateSupportedVersion and
the scheme registration), checked on the stand-in's own module without a lab: 1.23, 1.28 and
1.30 as issue #13 section 8 asks, 1.20-1.22 as the docker path has them."""

from __future__ import annotations

import pytest

from lab.payload_code import kubeadm_cfg

G = "kubeadm.k8s.io"
MIGRATE = ("'kubeadm config migrate --old-config old.yaml --new-config new.yaml', which will "
           "write the new, similar spec using a newer API version.")
SCHEME = 'in scheme "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/scheme/scheme.go:31"'


def old(api: str, release: str) -> str:
    return (f'your configuration file uses an old API spec: "{G}/{api}". Please use kubeadm '
            f"{release} instead and run {MIGRATE}")


def unknown(api: str) -> str:
    return f'no kind "InitConfiguration" is registered for version "{G}/{api}" {SCHEME}'


DEPRECATED = (f'common.go:83] your configuration file uses a deprecated API spec: "{G}/v1beta2". '
              f"Please use {MIGRATE}")
EXPERIMENTAL = (f'experimental API spec: "{G}/v1beta4" is not allowed. You can use the '
                "--allow-experimental-api flag if the command supports it.")

# release -> {api: (warning, error)}; None: accepted silently
TABLE = {
    "1.20.10": {"v1beta1": None, "v1beta2": None, "v1beta3": (None, unknown("v1beta3")),
                "v1beta4": (None, unknown("v1beta4"))},
    "1.22.17": {"v1beta1": (None, old("v1beta1", "v1.15")), "v1beta2": (DEPRECATED, None),
                "v1beta3": None, "v1beta4": (None, unknown("v1beta4"))},
    "1.23.17": {"v1beta1": (None, old("v1beta1", "v1.15")), "v1beta2": (DEPRECATED, None),
                "v1beta3": None, "v1beta4": (None, unknown("v1beta4"))},
    "1.28.15": {"v1beta1": (None, old("v1beta1", "v1.15")),
                "v1beta2": (None, old("v1beta2", "v1.22")), "v1beta3": None,
                "v1beta4": (None, EXPERIMENTAL)},
    "1.30.5": {"v1beta1": (None, old("v1beta1", "v1.15")),
               "v1beta2": (None, old("v1beta2", "v1.22")), "v1beta3": None,
               "v1beta4": (None, EXPERIMENTAL)},
}


@pytest.mark.parametrize("release", sorted(TABLE))
def test_acceptance_table(release, tmp_path, capsys):
    for api, want in TABLE[release].items():
        path = tmp_path / f"{api}.yaml"
        path.write_text(f"apiVersion: {G}/{api}\nkind: InitConfiguration\n---\n"
                        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n")
        warning, error = want or (None, None)
        if error:
            with pytest.raises(kubeadm_cfg.Usage) as exc:
                kubeadm_cfg.load_config(str(path), release)
            assert str(exc.value) == error, (release, api)
        else:
            docs = kubeadm_cfg.load_config(str(path), release)
            assert set(docs) == {"InitConfiguration", "KubeletConfiguration"}
        err = capsys.readouterr().err
        if warning:  # one klog line per kubeadm document: W1130 10:00:00.000000  PID file:line] ...
            assert err.startswith("W") and err.count("\n") == 1, err
            assert err.split(None, 3)[3] == warning + "\n", (release, api, err)
        else:
            assert err == "", (release, api, err)


@pytest.mark.parametrize(("release", "pause"), [("1.20.10", "3.2"), ("1.22.17", "3.5"),
                                                ("1.23.17", "3.6"), ("1.28.15", "3.9"),
                                                ("1.30.5", "3.9"), ("1.31.0", "3.10")])
def test_pause_by_release(release, pause):
    assert kubeadm_cfg.pause_version(release) == pause
    assert kubeadm_cfg.images("v" + release, "r.example", release)[4] == f"r.example/pause:{pause}"
