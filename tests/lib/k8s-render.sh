# tests/lib/k8s-render.sh: every rendering of deploy/kubernetes, for the
# tests that check them (tests/k8s-manifests.sh offline with kubeconform,
# tests/k8s-apiserver.sh against a real API server).  Source it; it defines
# K8S_RENDERINGS and k8s_render.
#
# K8S_RENDERINGS: NAME=WHAT pairs.  WHAT is a kustomization directory under
# deploy/kubernetes, or OVERLAY+COMPONENT: that overlay with that component.
K8S_RENDERINGS="base=base
overlays-tpm=overlays/tpm
overlays-softhsm-dev=overlays/softhsm-dev
examples=examples
tpm-kubelet=overlays/tpm+components/kubelet-pods
tpm-cluster=overlays/tpm+components/cluster-trust
softhsm-dev-cluster=overlays/softhsm-dev+components/cluster-trust"

# k8s_render KUSTOMIZE KDIR NAME OUTDIR: render rendering NAME of KDIR
# (deploy/kubernetes) into OUTDIR/NAME.yaml; kustomize's errors on stderr.
k8s_render() {
	local kustomize=$1 kdir=$2 name=$3 out=$4 what dir overlay component
	what=$(printf '%s\n' "$K8S_RENDERINGS" | sed -n "s|^$name=||p")
	[ -n "$what" ] || {
		echo "k8s_render: no rendering $name" >&2
		return 2
	}
	case $what in
	*+*)
		overlay=${what%+*}
		component=${what#*+}
		dir=$out/.k-$name
		mkdir -p "$dir"
		{
			echo "apiVersion: kustomize.config.k8s.io/v1beta1"
			echo "kind: Kustomization"
			echo "resources:"
			echo "  - $(realpath --relative-to="$dir" "$kdir/$overlay")"
			echo "components:"
			echo "  - $(realpath --relative-to="$dir" "$kdir/$component")"
		} >"$dir/kustomization.yaml"
		;;
	*) dir=$kdir/$what ;;
	esac
	"$kustomize" build "$dir" >"$out/$name.yaml"
}
