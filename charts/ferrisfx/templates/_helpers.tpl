{{/* Names. */}}
{{- define "ferrisfx.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ferrisfx.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A component's resource name: fullname-component, at most 63 characters. */}}
{{- define "ferrisfx.component" -}}
{{- printf "%s-%s" (include "ferrisfx.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ferrisfx.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ferrisfx.labels" -}}
helm.sh/chart: {{ include "ferrisfx.chart" . }}
{{ include "ferrisfx.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ferrisfx
{{- end -}}

{{- define "ferrisfx.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ferrisfx.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of one component (dict "root" $ "component" "server"). */}}
{{- define "ferrisfx.componentLabels" -}}
{{ include "ferrisfx.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "ferrisfx.componentSelector" -}}
{{ include "ferrisfx.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "ferrisfx.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ferrisfx.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ferrisfx.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "ferrisfx.secretName" -}}
{{- default (include "ferrisfx.fullname" .) .Values.existingSecret -}}
{{- end -}}

{{/* Addresses: the in-cluster dependency's Service when enabled, else the value. */}}
{{- define "ferrisfx.kafkaBrokers" -}}
{{- if .Values.kafka.inCluster.enabled -}}
{{- printf "%s:9092" (include "ferrisfx.component" (dict "root" . "component" "kafka")) -}}
{{- else -}}
{{- required "kafka.brokers is required" .Values.kafka.brokers -}}
{{- end -}}
{{- end -}}

{{- define "ferrisfx.postgresUrl" -}}
{{- if .Values.postgres.inCluster.enabled -}}
{{- printf "postgres://fx:%s@%s:5432/fx" .Values.postgres.inCluster.password (include "ferrisfx.component" (dict "root" . "component" "postgres")) -}}
{{- else -}}
{{- .Values.postgres.url -}}
{{- end -}}
{{- end -}}

{{- define "ferrisfx.consulAddress" -}}
{{- if .Values.consul.inCluster.enabled -}}
{{- printf "http://%s:8500" (include "ferrisfx.component" (dict "root" . "component" "consul")) -}}
{{- else -}}
{{- .Values.consul.address -}}
{{- end -}}
{{- end -}}

{{- define "ferrisfx.s3Endpoint" -}}
{{- if .Values.s3.inCluster.enabled -}}
{{- printf "http://%s:9000" (include "ferrisfx.component" (dict "root" . "component" "minio")) -}}
{{- else -}}
{{- .Values.s3.endpoint -}}
{{- end -}}
{{- end -}}

{{/* The in-cluster MinIO's credentials default to the chart's s3 keys. */}}
{{- define "ferrisfx.s3AccessKey" -}}
{{- default "ferrisfx" .Values.s3.accessKey -}}
{{- end -}}

{{- define "ferrisfx.s3SecretKey" -}}
{{- if .Values.s3.inCluster.enabled -}}
{{- default "fx-trial-secret-key" .Values.s3.secretKey -}}
{{- else -}}
{{- .Values.s3.secretKey -}}
{{- end -}}
{{- end -}}

{{- define "ferrisfx.elasticsearchUrl" -}}
{{- if .Values.elasticsearch.inCluster.enabled -}}
{{- printf "http://%s:9200" (include "ferrisfx.component" (dict "root" . "component" "elasticsearch")) -}}
{{- else -}}
{{- .Values.elasticsearch.url -}}
{{- end -}}
{{- end -}}

{{- define "ferrisfx.kibanaUrl" -}}
{{- if .Values.kibana.inCluster.enabled -}}
{{- printf "http://%s:5601" (include "ferrisfx.component" (dict "root" . "component" "kibana")) -}}
{{- else -}}
{{- .Values.kibana.url -}}
{{- end -}}
{{- end -}}

{{/* A pool's settings with the executor defaults under them. */}}
{{- define "ferrisfx.pool" -}}
{{- $defaults := pick .root.Values.executor "replicas" "maxConcurrency" "resources" "cacheSizeLimit" "cacheDiskMb" "functionSecret" "deliveryTokenSecret" "httpAllowNetworks" -}}
{{- toYaml (merge (deepCopy .pool) (deepCopy $defaults)) -}}
{{- end -}}

{{/* The pod-level settings every FerrisFX pod shares: volumes of the settings file. */}}
{{- define "ferrisfx.configVolume" -}}
- name: config
  projected:
    sources:
      - configMap:
          name: {{ include "ferrisfx.fullname" . }}
      {{- with .Values.kafka.caSecret }}
      # The Kafka brokers' CA, beside the settings file (backends.bus.ca_file).
      - secret:
          name: {{ . | quote }}
          items:
            - key: ca.pem
              path: kafka-ca.pem
      {{- end }}
{{- end -}}

{{/* Environment of every FerrisFX container: the secrets, the log settings. */}}
{{- define "ferrisfx.env" -}}
- name: FX_LOG
  value: {{ .Values.log.level | quote }}
- name: FX_LOG_JSON
  value: {{ .Values.log.json | quote }}
{{- end -}}

{{- define "ferrisfx.envFrom" -}}
- secretRef:
    name: {{ include "ferrisfx.secretName" . }}
{{- end -}}

{{/* Probes on the operations listener. */}}
{{- define "ferrisfx.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: ops
  initialDelaySeconds: {{ .Values.probes.liveness.initialDelaySeconds }}
  periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
  timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
  failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
readinessProbe:
  httpGet:
    path: /readyz
    port: ops
  initialDelaySeconds: {{ .Values.probes.readiness.initialDelaySeconds }}
  periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
  timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
  failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
{{- end -}}

{{/* Scheduling and pod security shared by every FerrisFX pod. */}}
{{- define "ferrisfx.podSpecCommon" -}}
serviceAccountName: {{ include "ferrisfx.serviceAccountName" . }}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Pod annotations: the settings' checksum rolls the pods when they change. */}}
{{- define "ferrisfx.podAnnotations" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if not .Values.existingSecret }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Security of the in-cluster trial dependencies: non-root as the image's own user. */}}
{{- define "ferrisfx.depPodSecurity" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: {{ .uid }}
  runAsGroup: {{ .uid }}
  fsGroup: {{ .uid }}
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{- define "ferrisfx.depContainerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  capabilities:
    drop: [ALL]
{{- end -}}

{{/* A ClusterIP Service for a dependency (dict "root" $ "component" "kafka" "ports" (list (list "kafka" 9092))). */}}
{{- define "ferrisfx.depService" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "ferrisfx.component" . }}
  labels:
    {{- include "ferrisfx.componentLabels" . | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "ferrisfx.componentSelector" . | nindent 4 }}
  ports:
    {{- range .ports }}
    - name: {{ index . 0 }}
      port: {{ index . 1 }}
      targetPort: {{ index . 0 }}
      protocol: TCP
    {{- end }}
{{- end -}}
