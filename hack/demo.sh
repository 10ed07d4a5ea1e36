#!/usr/bin/env bash
# make demo: kzero's main job, end to end, on the project's real cluster
# (one node unless NODES says more): bring it up, install kzero from its
# own manifests, deploy a sample app into an enrolled namespace whose
# manifests mention nothing of kzero, and show what each pod got; then the
# mesh: a client and two services, a policy that lets the client call one
# of them, the allowed call, the refused one with its reason, the audit
# events, and a capture of the pod network that holds only TLS.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "${here}/cluster/lib.sh"
cd "${KZERO_REPO_ROOT}"
export PATH="$PATH:/usr/local/go/bin"

kubectl() { "${KZERO_BIN_DIR}/kubectl" --kubeconfig "${KZERO_KUBECONFIG}" "$@"; }
say() { printf '\n== %s\n' "$*"; }

say "kzero demo: $(bin/kzero version)"
bash "${here}/cluster/up.sh" node

say "building the kzero and sample-app images (no Docker: go-containerregistry) and importing them"
step "kzero image" bash "${here}/cluster/image.sh" --path /kzero --also ./cmd/kzero-agent --also ./cmd/kzero-cni ./cmd/kzero kzero.local/kzero:demo
step "sample app image" bash "${here}/cluster/image.sh" ./hack/demo/app kzero.local/demo-app:v1

# Each node of the harness has its own /var/lib/kubelet, kzero install's
# default. The harness's kube-apiserver presents its webhook client
# certificate to admission webhooks; given its CA, kzero's webhooks read
# reviews only from kube-apiserver (docs/install.md).
say "installing kzero: bin/kzero install --image kzero.local/kzero:demo --webhook-client-ca ... | kubectl apply -f -"
bin/kzero install --image kzero.local/kzero:demo --pull-policy Never \
	--webhook-client-ca "${KZERO_PKI_DIR}/webhook-client-ca.crt" --webhook-client-name kube-apiserver-webhook-client |
	kubectl apply -f -
kubectl -n kzero-system rollout status deployment/kzero-authority --timeout=180s
kubectl -n kzero-system rollout status daemonset/kzero-agent --timeout=180s

say "enrolling namespace demo (kubectl label namespace demo kzero.dev/enrolled=true), which enforces Pod Security restricted"
kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f -
kubectl label namespace demo kzero.dev/enrolled=true pod-security.kubernetes.io/enforce=restricted --overwrite
kubectl create namespace plain --dry-run=client -o yaml | kubectl apply -f -

say "deploying the sample app: plain Deployments, nothing about kzero in them (non-root, as restricted wants): web and api serve plain HTTP, client calls them"
for app in web api client; do
	args='[]'
	[[ "${app}" == client ]] || args='[serve, ":8080"]'
	kubectl -n demo create serviceaccount "${app}" --dry-run=client -o yaml | kubectl apply -f -
	cat <<YAML | kubectl apply -f -
apiVersion: apps/v1
kind: Deployment
metadata: {name: ${app}, namespace: demo}
spec:
  replicas: 1
  selector: {matchLabels: {app: ${app}}}
  template:
    metadata: {labels: {app: ${app}}}
    spec:
      serviceAccountName: ${app}
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        fsGroup: 65532
        seccompProfile: {type: RuntimeDefault}
      containers:
      - name: ${app}
        image: kzero.local/demo-app:v1
        imagePullPolicy: Never
        args: ${args}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
YAML
	[[ "${app}" == client ]] && continue
	cat <<YAML | kubectl apply -f -
apiVersion: v1
kind: Service
metadata: {name: ${app}, namespace: demo}
spec:
  selector: {app: ${app}}
  ports: [{name: http, port: 80, targetPort: 8080}]
YAML
done
cat <<YAML | kubectl apply -f -
apiVersion: v1
kind: Pod
metadata: {name: outsider, namespace: plain}
spec:
  containers:
  - {name: app, image: kzero.local/demo-app:v1, imagePullPolicy: Never}
YAML
kubectl -n demo rollout status deployment/web --timeout=120s
kubectl -n demo rollout status deployment/api --timeout=120s
kubectl -n demo rollout status deployment/client --timeout=120s
kubectl -n plain wait --for=condition=Ready pod/outsider --timeout=120s

say "what each pod of the enrolled namespace says about itself (its own log)"
for app in web api client; do
	kubectl -n demo logs "deployment/${app}" | tail -1
done
say "the node agent's Workload API socket reached them as a read-only CSI inline volume (no hostPath)"
kubectl -n demo get pods -l app=web \
	-o jsonpath='{range .items[0].spec.volumes[?(@.name=="kzero-workload-api")]}{.name}: {.csi}{"\n"}{end}'
say "the pod of the namespace that is not enrolled got nothing"
kubectl -n plain logs outsider | tail -1

say "the PodCertificateRequests kubelet made, and what kzero decided"
kubectl -n demo get podcertificaterequests \
	-o custom-columns='POD:.spec.podName,SA:.spec.serviceAccountName,STATE:.status.conditions[0].type,NOT-BEFORE:.status.notBefore,NOT-AFTER:.status.notAfter,REFRESH-AT:.status.beginRefreshAt'

say "the trust bundle every pod verifies against (ClusterTrustBundle)"
ctb="kzero.dev:identity:cluster.local"
kubectl get clustertrustbundle "${ctb}" -o custom-columns='NAME:.metadata.name,SIGNER:.spec.signerName'
tmp="$(mktemp -d)"
kubectl get clustertrustbundle "${ctb}" -o jsonpath='{.spec.trustBundle}' |
	awk -v d="${tmp}" '/BEGIN CERT/{n++} n{print > (d "/ca-" n ".pem")}'
for f in "${tmp}"/ca-*.pem; do openssl x509 -in "$f" -noout -subject -startdate -enddate | paste -sd' '; done
rm -rf "${tmp}"

# ---- the mesh ------------------------------------------------------------------------

say "the mesh: an AccessPolicy lets the client call web; nothing lets anyone call api (default deny)"
cat <<YAML | tee /dev/stderr | kubectl apply -f - 2>/dev/null
apiVersion: kzero.dev/v1alpha1
kind: AccessPolicy
metadata: {name: web-allow-client, namespace: demo}
spec:
  selector: {serviceAccounts: [web]}
  rules:
  - name: client-calls-web
    from: [{serviceAccounts: [client]}]
    to: [{ports: [8080]}]
YAML
web="$(kubectl -n demo get service web -o jsonpath='{.spec.clusterIP}')"
api="$(kubectl -n demo get service api -o jsonpath='{.spec.clusterIP}')"
client="$(kubectl -n demo get pods -l app=client -o jsonpath='{.items[0].metadata.name}')"
node="$(kubectl -n demo get pod "${client}" -o jsonpath='{.spec.nodeName}')"
client_ip="$(kubectl -n demo get pod "${client}" -o jsonpath='{.status.podIP}')"
marker="kzero-demo-marker-$$"
# Every agent has compiled the policy within a second of its creation.
sleep 2

say "a capture of the pod network on ${node} (tcpdump on its bridge cni0, the client's packets) while the client calls"
pcap="$(mktemp --suffix .pcap)"
in_node "${node}" tcpdump -i cni0 -n -s 0 --immediate-mode -U -w - "tcp and host ${client_ip}" 2>/dev/null >"${pcap}" &
dump=$!
sleep 1

say "client → web (allowed): kubectl -n demo exec ${client} -- /demo-app call http://${web}/?${marker}"
kubectl -n demo exec "${client}" -- /demo-app call "http://${web}/?${marker}"
say "client → api (no rule allows it): refused by api's agent, the client sees its connection reset at once"
kubectl -n demo exec "${client}" -- /demo-app call "http://${api}/?${marker}"
sleep 1
kill "${dump}" 2>/dev/null || true
wait "${dump}" 2>/dev/null || true

say "what the capture holds, packets by service port: the client's calls crossed the pod network as TLS to port 15008 only"
tcpdump -r "${pcap}" -n 2>/dev/null | awk '$2 == "IP" {sub(/:$/, "", $5); n = split($3, a, "."); m = split($5, b, ".");
	p = (a[n] + 0 < b[m] + 0) ? a[n] : b[m]; print "port " p}' | sort | uniq -c | sort -rn
if tcpdump -r "${pcap}" -A -n 2>/dev/null | grep -q "${marker}"; then
	echo "  the marker ${marker} the client sent crossed the pod network in plain text: NOT PROTECTED"
	exit 1
fi
echo "  the marker ${marker} the client sent is nowhere in the capture: only TLS crossed"
rm -f "${pcap}"

web_pod="$(kubectl -n demo get pods -l app=web -o jsonpath='{.items[0].status.podIP}')"
say "plain/outsider (a namespace not enrolled) → web's pod in plain text: refused, the namespace is strict (label it kzero.dev/mesh-mode=permissive to let it in)"
kubectl -n plain exec outsider -- /demo-app call "http://${web_pod}:8080/"

say "the audit events of the agents (kubectl -n kzero-system logs -l app.kubernetes.io/component=agent -c agent)"
kubectl -n kzero-system logs -l app.kubernetes.io/component=agent -c agent --tail=-1 |
	grep '"kind":"access"' | tail -4 | cut -c1-600

cat <<TXT

The cluster keeps running so you can look around:
  export KUBECONFIG=${KZERO_KUBECONFIG}
  ${KZERO_BIN_DIR}/kubectl -n demo get pods
  ${KZERO_BIN_DIR}/kubectl -n demo logs deployment/web -f     (watch the certificate refresh)
  ${KZERO_BIN_DIR}/kubectl -n demo exec deploy/client -- /demo-app call http://${web}/
  ${KZERO_BIN_DIR}/kubectl -n kzero-system logs -l app.kubernetes.io/component=agent -c agent -f | grep '"kind":"access"'
See docs/mesh.md for how it works.
Tear it all down with:
  make cluster-down
TXT
