# deploy/: the Kubernetes manifests (issue 8) and the Keycloak realm files.
# tests/k8s-manifests.sh renders the kustomizations with kustomize and
# validates them with kubeconform (both built from the Go module proxy)
# against schemas made offline from k8s.io/kubernetes' OpenAPI spec.
EXTRA_DIST += deploy/kubernetes deploy/keycloak/brokers tests/lib/k8s-schemas.py
TESTS += tests/k8s-manifests.sh tests/k8s-enrol.sh
EXTRA_DIST += tests/k8s-manifests.sh tests/k8s-enrol.sh tests/lib/k8s-render.sh
# The same renderings against a real kube-apiserver and etcd, built from the
# Go module proxy and cached by version (tests/lib/kube-apiserver.sh): a
# server-side strict dry run, and the agent's RBAC asked with kubectl auth
# can-i.
TESTS += tests/k8s-apiserver.sh
EXTRA_DIST += tests/k8s-apiserver.sh tests/lib/kube-apiserver.sh

# Cloud federation (checkpoint 12): the identity-broker fragments in
# deploy/keycloak/brokers created in a real Keycloak (tests/lib/keycloak.sh)
# through the admin REST API and read back.
TESTS += tests/keycloak-brokers.sh
EXTRA_DIST += tests/keycloak-brokers.sh

# The container image (issue 17): `make image` builds it with mmdebstrap,
# umoci and skopeo from Debian 12 packages and this build's programs, into
# image/ (an OCI layout and a docker-archive); tests/image.sh builds it
# twice (same digest) and runs the agent from its unpacked rootfs.
# The image ships a normal build's programs: a sanitizer build's need
# libasan, which no image carries, and this test is about packaging, not
# memory safety, so the ASan pass does not run it.
EXTRA_DIST += scripts/image
if !ENABLE_SANITIZERS
TESTS += tests/image.sh
endif
EXTRA_DIST += tests/image.sh
image: agent/cubeid-agent$(EXEEXT) cli/cubeid$(EXEEXT)
	$(AM_V_GEN)$(srcdir)/scripts/image --builddir $(abs_builddir) --out $(abs_builddir)/image
.PHONY: image
