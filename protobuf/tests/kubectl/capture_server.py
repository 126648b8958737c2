"""A stand-in apiserver for tests/kubectl/capture.sh: answers just enough discovery for
`kubectl create ...`, saves each POST body to OUTDIR/NN-resource.bin and answers 201.

    python3 capture_server.py PORT OUTDIR
"""
import http.server, json, os, sys, itertools
OUT = sys.argv[2]
counter = itertools.count()
KINDS = {"configmaps": ("v1", "ConfigMap"), "secrets": ("v1", "Secret"), "namespaces": ("v1", "Namespace"),
         "pods": ("v1", "Pod"), "services": ("v1", "Service"), "serviceaccounts": ("v1", "ServiceAccount"),
         "resourcequotas": ("v1", "ResourceQuota"), "deployments": ("apps/v1", "Deployment"),
         "jobs": ("batch/v1", "Job"), "cronjobs": ("batch/v1", "CronJob"), "token": ("authentication.k8s.io/v1", "TokenRequest"),
         "priorityclasses": ("scheduling.k8s.io/v1", "PriorityClass"), "roles": ("rbac.authorization.k8s.io/v1", "Role"),
         "poddisruptionbudgets": ("policy/v1", "PodDisruptionBudget"), "ingresses": ("networking.k8s.io/v1", "Ingress"),
         "clusterroles": ("rbac.authorization.k8s.io/v1", "ClusterRole"), "rolebindings": ("rbac.authorization.k8s.io/v1", "RoleBinding")}
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def reply(self, code, obj):
        b = json.dumps(obj).encode()
        self.send_response(code); self.send_header("Content-Type", "application/json"); self.send_header("Content-Length", str(len(b))); self.end_headers(); self.wfile.write(b)
    def do_GET(self):
        if self.path.startswith("/api?") or self.path == "/api":
            return self.reply(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        if self.path.startswith("/apis?") or self.path == "/apis":
            return self.reply(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": "rbac.authorization.k8s.io", "versions": [{"groupVersion": "rbac.authorization.k8s.io/v1", "version": "v1"}],
                 "preferredVersion": {"groupVersion": "rbac.authorization.k8s.io/v1", "version": "v1"}}]})
        def res(name, kind, ns=True, verbs=("create","get","list")):
            return {"name": name, "singularName": kind.lower(), "namespaced": ns, "kind": kind, "verbs": list(verbs)}
        if self.path.split("?")[0] == "/api/v1":
            return self.reply(200, {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                res("pods", "Pod"), res("configmaps", "ConfigMap"), res("namespaces", "Namespace", False)]})
        if self.path.split("?")[0] == "/apis/rbac.authorization.k8s.io/v1":
            return self.reply(200, {"kind": "APIResourceList", "groupVersion": "rbac.authorization.k8s.io/v1", "resources": [
                res("roles", "Role"), res("clusterroles", "ClusterRole", False)]})
        self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound"})
    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0)); body = self.rfile.read(n)
        parts = self.path.split("?")[0].strip("/").split("/")
        res = parts[-1]
        i = next(counter)
        with open(os.path.join(OUT, f"{i:02d}-{res}.bin"), "wb") as f: f.write(body)
        av, kind = KINDS.get(res, ("v1", "Unknown"))
        obj = {"kind": kind, "apiVersion": av, "metadata": {"name": "captured", "namespace": "default"}}
        if kind == "TokenRequest": obj["status"] = {"token": "abc", "expirationTimestamp": "2030-01-01T00:00:00Z"}
        self.reply(201, obj)
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
