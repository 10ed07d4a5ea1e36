#!/usr/bin/env bash
# pki.sh: writes the cluster's PKI and kubeconfigs into ${KZERO_PKI_DIR}:
#   ca.{crt,key}        the cluster CA: API server clients, kubelet, signer
#   etcd-ca.{crt,key}   a separate CA that only etcd and its client trust
#   front-proxy-ca.{crt,key}  the aggregation layer's CA (front-proxy-client)
#   webhook-client-ca.{crt,key}  a CA only for the client certificate
#                       kube-apiserver presents to admission webhooks
#                       (apiserver-webhook-client), which kzero's webhooks
#                       trust to tell kube-apiserver from anyone else
#   admission.yaml      kube-apiserver's admission configuration, which has it
#                       present that certificate to every admission webhook
#   apiserver, apiserver-kubelet-client, apiserver-etcd-client, etcd-server,
#   for each node kubelet-server-<node> (serving) and kubelet-<node> (client,
#   system:node:<node>), and client certificates for admin,
#   kube-controller-manager, kube-scheduler, kube-proxy
#   sa.{key,pub}        the service account signing key
# and <component>.kubeconfig for each client. Keys are ECDSA P-256 (the
# service account key is RSA 2048, the algorithm every token verifier has).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v openssl >/dev/null || die "openssl is missing: run hack/cluster/install-deps.sh"
d="${KZERO_PKI_DIR}"
mkdir -p "${d}"
chmod 700 "${d}"
server_url="https://${KZERO_HOST_IP}:${KZERO_APISERVER_PORT}"
days=365

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; chmod 600 "$1"; }

# ca NAME CN
ca() {
	newkey "${d}/$1.key"
	openssl req -x509 -new -key "${d}/$1.key" -subj "/CN=$2" -days 3650 -sha256 \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
		-out "${d}/$1.crt"
}

# cert NAME CA SUBJECT USAGE [SAN]: USAGE is server, client or peer.
cert() {
	local name="$1" issuer="$2" subj="$3" usage="$4" san="${5:-}" eku
	case "${usage}" in
	server) eku=serverAuth ;;
	client) eku=clientAuth ;;
	peer) eku=serverAuth,clientAuth ;;
	esac
	newkey "${d}/${name}.key"
	{
		echo "basicConstraints=critical,CA:FALSE"
		echo "keyUsage=critical,digitalSignature"
		echo "extendedKeyUsage=${eku}"
		echo "authorityKeyIdentifier=keyid"
		[[ -n "${san}" ]] && echo "subjectAltName=${san}"
	} >"${d}/${name}.ext"
	openssl req -new -key "${d}/${name}.key" -subj "${subj}" 2>/dev/null |
		openssl x509 -req -CA "${d}/${issuer}.crt" -CAkey "${d}/${issuer}.key" \
			-set_serial "0x$(openssl rand -hex 16)" -days "${days}" -sha256 \
			-extfile "${d}/${name}.ext" -out "${d}/${name}.crt" 2>/dev/null
	rm -f "${d}/${name}.ext"
}

b64() { base64 -w0 <"$1"; }

# kubeconfig NAME USER: a kubeconfig for the client certificate NAME.
kubeconfig() {
	local name="$1" user="$2" f="${d}/$1.kubeconfig"
	cat >"${f}" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kzero
  cluster:
    server: ${server_url}
    certificate-authority-data: $(b64 "${d}/ca.crt")
users:
- name: ${user}
  user:
    client-certificate-data: $(b64 "${d}/${name}.crt")
    client-key-data: $(b64 "${d}/${name}.key")
contexts:
- name: kzero
  context:
    cluster: kzero
    user: ${user}
current-context: kzero
EOF
	chmod 600 "${f}"
}

ca ca kzero-cluster-ca
ca etcd-ca kzero-etcd-ca
ca front-proxy-ca kzero-front-proxy-ca
ca webhook-client-ca kzero-webhook-client-ca

apiserver_sans="IP:${KZERO_HOST_IP},IP:${KZERO_SERVICE_APISERVER_IP},IP:127.0.0.1"
apiserver_sans+=",DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
apiserver_sans+=",DNS:kubernetes.default.svc.cluster.local,DNS:localhost"
cert apiserver ca "/CN=kube-apiserver" server "${apiserver_sans}"
cert apiserver-kubelet-client ca "/CN=kube-apiserver-kubelet-client" client
cert apiserver-etcd-client etcd-ca "/CN=kube-apiserver-etcd-client" client
cert etcd-server etcd-ca "/CN=kzero-etcd" peer "IP:${KZERO_LOOPBACK},IP:127.0.0.1,DNS:localhost"
cert front-proxy-client front-proxy-ca "/CN=front-proxy-client" client
cert apiserver-webhook-client webhook-client-ca "/CN=kube-apiserver-webhook-client" client
for ((i = 1; i <= KZERO_NODES; i++)); do
	n="$(node_name "${i}")"
	cert "kubelet-server-${n}" ca "/CN=${n}" server "IP:$(node_ip "${i}"),DNS:${n}"
	cert "kubelet-${n}" ca "/O=system:nodes/CN=system:node:${n}" client
done

cert admin ca "/O=system:masters/CN=kubernetes-admin" client
cert kube-controller-manager ca "/CN=system:kube-controller-manager" client
cert kube-scheduler ca "/CN=system:kube-scheduler" client
cert kube-proxy ca "/CN=system:kube-proxy" client

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "${d}/sa.key" 2>/dev/null
chmod 600 "${d}/sa.key"
openssl pkey -in "${d}/sa.key" -pubout -out "${d}/sa.pub"

kubeconfig admin kubernetes-admin
for ((i = 1; i <= KZERO_NODES; i++)); do
	n="$(node_name "${i}")"
	kubeconfig "kubelet-${n}" "system:node:${n}"
done
kubeconfig kube-controller-manager system:kube-controller-manager
kubeconfig kube-scheduler system:kube-scheduler
kubeconfig kube-proxy system:kube-proxy

# kube-apiserver's admission configuration: it presents
# apiserver-webhook-client to every admission webhook (the kubeconfig's user
# "*"), so that a webhook can tell a review from kube-apiserver from one
# sent by anyone else who reaches it.
cat >"${d}/apiserver-webhook-client.kubeconfig" <<EOF
apiVersion: v1
kind: Config
users:
- name: "*"
  user:
    client-certificate-data: $(b64 "${d}/apiserver-webhook-client.crt")
    client-key-data: $(b64 "${d}/apiserver-webhook-client.key")
EOF
chmod 600 "${d}/apiserver-webhook-client.kubeconfig"
webhook_admission() {
	cat <<EOF
- name: $1
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: ${d}/apiserver-webhook-client.kubeconfig
EOF
}
{
	echo "apiVersion: apiserver.config.k8s.io/v1"
	echo "kind: AdmissionConfiguration"
	echo "plugins:"
	webhook_admission ValidatingAdmissionWebhook
	webhook_admission MutatingAdmissionWebhook
} >"${d}/admission.yaml"
