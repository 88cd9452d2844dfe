{{/*
Everything one mesh service needs, for each of its workloads (one, or one per color):
ServiceAccount, Deployment (app + Envoy sidecar), headless Service (the sidecar's mTLS port),
ConfigMaps (Envoy bootstrap/SDS, routes), PodDisruptionBudget, NetworkPolicy, and a
PersistentVolumeClaim or HorizontalPodAutoscaler when the service's values ask for one.
Called from templates/<service>.yaml with (dict "root" $ "service" "<service>").
*/}}
{{- define "af.service" -}}
{{- $root := .root -}}
{{- $service := .service -}}
{{- $v := index $root.Values $service -}}
{{- $mesh := include "af.mesh" $root | fromYaml -}}
{{- include "af.serviceAccount" (dict "root" $root "service" $service) }}
{{- range $id, $wl := $mesh.workloads }}
{{- if eq $wl.service $service }}
{{- $ctx := dict "root" $root "service" $service "id" $id "color" $wl.color }}
{{- $colorValues := dict }}
{{- if $wl.color }}{{ $colorValues = (index ($v.colors | default dict) $wl.color) | default dict }}{{ end }}
{{- /* On PostgreSQL (database.existingSecret) the registry's and the schedulers' state is shared: any number of
replicas, RollingUpdate, and their persistence is ignored (a volume would hold nothing and pin the pod to one
replica), so the default persistence on does not have to be turned off by hand. */}}
{{- $db := $root.Values.database | default dict }}
{{- $shared := and $db.existingSecret (has $service (list "registry" "scheduler")) }}
{{- $persist := and $v.persistence $v.persistence.enabled (not $shared) }}
{{- $replicas := $colorValues.replicas | default $v.replicas }}
{{- if hasKey $colorValues "replicas" }}{{ $replicas = $colorValues.replicas }}{{ end }}
{{- $autoscale := and $v.autoscaling $v.autoscaling.enabled }}
{{- if and $persist (gt (int $replicas) 1) }}{{ fail (printf "%s: persistence (ReadWriteOnce) allows one replica per workload" $service) }}{{ end }}
{{- if and $persist $autoscale }}{{ fail (printf "%s: persistence and autoscaling exclude each other" $service) }}{{ end }}
---
{{ include "af.envoyConfigMap" $ctx }}
---
{{ include "af.routesConfigMap" $ctx }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $id }}
  labels:
    {{- include "af.labels" $ctx | nindent 4 }}
spec:
  # Headless: each ready pod is an A record, and callers' sidecars (STRICT_DNS) balance, retry
  # and eject per pod instead of per virtual IP. Only the sidecar's mTLS port is published.
  clusterIP: None
  selector:
    {{- include "af.selector" $ctx | nindent 4 }}
  ports:
  - {name: mesh, port: {{ $wl.ports.inbound }}, targetPort: mesh, protocol: TCP}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $id }}
  labels:
    {{- include "af.labels" $ctx | nindent 4 }}
spec:
  {{- if not $autoscale }}
  replicas: {{ $replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    {{- if $persist }}
    type: Recreate
    {{- else }}
    type: RollingUpdate
    rollingUpdate: {maxUnavailable: 0, maxSurge: 1}
    {{- end }}
  selector:
    matchLabels:
      {{- include "af.selector" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "af.labels" $ctx | nindent 8 }}
      annotations:
        # Bootstrap and SDS changes need a new Envoy; route (weight) changes do not, so they
        # are not part of this checksum.
        checksum/envoy: {{ include "af.envoyConfigMap" $ctx | sha256sum }}
    spec:
      serviceAccountName: {{ $service }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      # The app drains in-flight calls on SIGTERM (AF_SHUTDOWN_GRACE_SECONDS); its sidecar stops after it.
      terminationGracePeriodSeconds: 30
      {{- with $root.Values.images.pullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- include "af.podSecurity" $root | nindent 6 }}
      initContainers:
      {{- include "af.envoyContainer" (dict "root" $root "kind" "sidecar" "inbound" $wl.ports.inbound "probePort" $mesh.probePort "resources" $root.Values.envoy.resources) | nindent 6 }}
      containers:
      - name: app
        image: {{ include "af.image" (dict "root" $root "repository" $v.image.repository "tag" ($colorValues.tag | default $v.image.tag)) }}
        imagePullPolicy: {{ $root.Values.images.pullPolicy }}
        command: [python, -m, {{ $wl.module }}]
        env:
        {{- $env := merge (dict) ($v.env | default dict) $wl.env }}
        {{- $_ := set $env "AF_OTLP_ENDPOINT" (printf "%s:4317" ($root.Values.tracing.otlpHost | default (printf "otel-collector.%s.svc.%s" $root.Release.Namespace $root.Values.clusterDomain))) }}
        {{- if and (eq $service "signer") $v.vaultTokenSecret }}
        {{- $_ := set $env "AF_VAULT_TOKEN_FILE" "/var/run/secrets/agentfactory/vault/token" }}
        {{- end }}
        {{- $_ := set $env "PYTHONDONTWRITEBYTECODE" "1" }}
        {{- range $k := keys $env | sortAlpha }}
        - {name: {{ $k }}, value: {{ index $env $k | toString | quote }}}
        {{- end }}
        {{- if $shared }}
        # Only this service's DSN (its own role, docs/database.md), never the Secret's other keys.
        - name: AF_DATABASE_URL
          valueFrom: {secretKeyRef: {name: {{ $db.existingSecret }}, key: {{ index $db.keys $service | quote }}}}
        {{- end }}
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        ports:
        - {name: metrics, containerPort: {{ $wl.ports.metrics }}, protocol: TCP}
        # The app listens on loopback only (its sidecar is the only way in), so the kubelet's
        # native gRPC probes go to the sidecar's probe listener, which relays exactly
        # grpc.health.v1.Health/Check to the app.
        startupProbe:
          grpc: {port: {{ $mesh.probePort }}}
          periodSeconds: 2
          failureThreshold: 60
        livenessProbe:
          grpc: {port: {{ $mesh.probePort }}}
          periodSeconds: 10
          timeoutSeconds: 3
          failureThreshold: 3
        readinessProbe:
          # The service's own health entry turns SERVING only once it can do its job.
          grpc: {port: {{ $mesh.probePort }}, service: {{ $wl.grpcService }}}
          periodSeconds: 5
          timeoutSeconds: 3
          failureThreshold: 2
        resources:
          {{- toYaml $v.resources | nindent 10 }}
        {{- include "af.containerSecurity" $root | nindent 8 }}
        volumeMounts:
        - {name: data, mountPath: {{ $mesh.dataDir }}}
        - {name: tmp, mountPath: /tmp}
        {{- if and (eq $service "signer") $v.vaultTokenSecret }}
        - {name: vault-token, mountPath: /var/run/secrets/agentfactory/vault, readOnly: true}
        {{- end }}
        {{- if and $shared $db.caKey }}
        - {name: database-ca, mountPath: /var/run/secrets/agentfactory/database, readOnly: true}
        {{- end }}
      volumes:
      {{- include "af.envoyVolumes" $ctx | nindent 6 }}
      - name: tmp
        emptyDir: {sizeLimit: 256Mi}
      - name: data
        {{- if $persist }}
        persistentVolumeClaim: {claimName: {{ $id }}-data}
        {{- else }}
        emptyDir: {sizeLimit: {{ ($v.persistence | default dict).size | default "1Gi" }}}
        {{- end }}
      {{- if and (eq $service "signer") $v.vaultTokenSecret }}
      - name: vault-token
        secret: {secretName: {{ $v.vaultTokenSecret }}, defaultMode: 0440, items: [{key: token, path: token}]}
      {{- end }}
      {{- if and $shared $db.caKey }}
      # The database server's CA only (sslrootcert=/var/run/secrets/agentfactory/database/ca.crt).
      - name: database-ca
        secret: {secretName: {{ $db.existingSecret }}, defaultMode: 0440, items: [{key: {{ $db.caKey | quote }}, path: ca.crt}]}
      {{- end }}
{{- if $persist }}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {{ $id }}-data
  labels:
    {{- include "af.labels" $ctx | nindent 4 }}
  annotations:
    helm.sh/resource-policy: keep
spec:
  accessModes: [ReadWriteOnce]
  {{- with $v.persistence.storageClass }}
  storageClassName: {{ . }}
  {{- end }}
  resources:
    requests: {storage: {{ $v.persistence.size }}}
{{- end }}
{{- if $autoscale }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $id }}
  labels:
    {{- include "af.labels" $ctx | nindent 4 }}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: {{ $id }}}
  minReplicas: {{ $colorValues.minReplicas | default $v.autoscaling.minReplicas }}
  maxReplicas: {{ $colorValues.maxReplicas | default $v.autoscaling.maxReplicas }}
  metrics:
  - type: Resource
    resource:
      name: cpu
      target: {type: Utilization, averageUtilization: {{ $v.autoscaling.targetCPUUtilizationPercentage }}}
  behavior:
    # Runs are long: shed capacity slowly so in-flight agents are not squeezed.
    scaleDown: {stabilizationWindowSeconds: 300}
{{- end }}
---
{{ include "af.pdb" (merge (dict "pdb" $v.podDisruptionBudget) $ctx) }}
{{- if $root.Values.networkPolicy.enabled }}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ $id }}
  labels:
    {{- include "af.labels" $ctx | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "af.selector" $ctx | nindent 6 }}
  policyTypes: [Ingress, Egress]
  ingress:
  {{- if $wl.callers }}
  # Its mesh callers (as the topology says), and only on the sidecar's mTLS port; the sidecar's
  # RBAC then decides per method and caller identity.
  - from:
    {{- range $wl.callers }}
    - podSelector:
        matchLabels:
          {{- include "af.selector" (dict "root" $root "id" .) | nindent 10 }}
    {{- end }}
    ports:
    - {port: {{ $wl.ports.inbound }}, protocol: TCP}
  {{- end }}
  {{- with $root.Values.networkPolicy.metricsFrom }}
  - from:
      {{- toYaml . | nindent 6 }}
    ports:
    - {port: {{ $wl.ports.metrics }}, protocol: TCP}
    - {port: {{ $mesh.probePort }}, protocol: TCP}
  {{- end }}
  egress:
  {{- range $wl.calls }}
  - to:
    - podSelector:
        matchLabels:
          {{- include "af.selector" (dict "root" $root "id" .) | nindent 10 }}
    ports:
    - {port: {{ (index $mesh.workloads .).ports.inbound }}, protocol: TCP}
  {{- end }}
  {{- include "af.dnsEgress" $root | nindent 2 }}
  {{- with $root.Values.networkPolicy.extraEgress }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
  {{- with $v.extraEgress }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
  {{- if $shared }}
  {{- with $db.egress }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
  {{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}
