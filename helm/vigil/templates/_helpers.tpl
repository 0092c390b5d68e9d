{{/* The chart's name, truncated to the 63 characters of a DNS label. */}}
{{- define "vigil.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name. A release named after the chart ("vigil") gives "vigil", so that the
component names match what monitoring/alertmanager/alertmanager.yml calls (vigil-retrain-relay).
*/}}
{{- define "vigil.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "vigil.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "vigil.labels" -}}
helm.sh/chart: {{ include "vigil.chart" . }}
{{ include "vigil.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vigil
{{- end }}

{{- define "vigil.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vigil.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Per-component helpers take (dict "root" $ "component" "triton"). */}}
{{- define "vigil.componentName" -}}
{{- printf "%s-%s" (include "vigil.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vigil.componentLabels" -}}
{{ include "vigil.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "vigil.componentSelectorLabels" -}}
{{ include "vigil.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The component's service account: its own (with its IRSA role) unless creation is off. */}}
{{- define "vigil.serviceAccountName" -}}
{{- if .root.Values.serviceAccounts.create }}
{{- include "vigil.componentName" . }}
{{- else }}
{{- default "default" (index .root.Values.serviceAccounts.names .component) }}
{{- end }}
{{- end }}

{{/* A Vigil image: (dict "root" $ "image" .Values.image.training). */}}
{{- define "vigil.image" -}}
{{- $registry := .root.Values.image.registry }}
{{- $tag := default .root.Chart.AppVersion .root.Values.image.tag }}
{{- if $registry }}
{{- printf "%s/%s:%s" $registry .image.repository $tag }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{/* A third-party image from its values (repository, tag). */}}
{{- define "vigil.thirdPartyImage" -}}
{{- printf "%s:%s" .repository .tag }}
{{- end }}

{{- define "vigil.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{- define "vigil.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end }}

{{/* Where data lives and how AWS is reached: contracts/settings.py (prefix VIGIL_). */}}
{{- define "vigil.storeEnv" -}}
- name: VIGIL_STORE_URI
  value: {{ .Values.store.uri | quote }}
- name: VIGIL_AWS_REGION
  value: {{ .Values.aws.region | quote }}
- name: AWS_REGION
  value: {{ .Values.aws.region | quote }}
{{- end }}

{{- define "vigil.mlflowUri" -}}
{{- if .Values.mlflow.enabled }}
{{- printf "http://%s:%d" (include "vigil.componentName" (dict "root" . "component" "mlflow")) (int .Values.mlflow.port) }}
{{- else }}
{{- required "mlflow.externalTrackingUri is required when mlflow.enabled is false" .Values.mlflow.externalTrackingUri }}
{{- end }}
{{- end }}

{{- define "vigil.daskSchedulerAddress" -}}
{{- printf "tcp://%s-scheduler:8786" (include "vigil.componentName" (dict "root" . "component" "dask")) }}
{{- end }}

{{/* A writable /tmp for containers with a read-only root filesystem. */}}
{{- define "vigil.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end }}

{{- define "vigil.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* Scheduling of a component: nodeSelector, tolerations and affinity from its values. */}}
{{- define "vigil.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* NetworkPolicy peers: a component's pods, a namespace, the world outside the cluster. */}}
{{- define "vigil.peer" -}}
- podSelector:
    matchLabels:
      {{- include "vigil.componentSelectorLabels" . | nindent 6 }}
{{- end }}

{{- define "vigil.namespacePeer" -}}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ . }}
{{- end }}

{{- define "vigil.daskPeer" -}}
- podSelector:
    matchLabels:
      dask.org/cluster-name: {{ include "vigil.componentName" (dict "root" . "component" "dask") }}
{{- end }}

{{/* HTTPS to AWS APIs (S3, CloudWatch, STS), GitHub, Hugging Face. */}}
{{- define "vigil.externalHttpsEgress" -}}
- to:
    - ipBlock:
        cidr: {{ .Values.networkPolicy.externalEgress.cidr }}
        {{- with .Values.networkPolicy.externalEgress.except }}
        except:
          {{- toYaml . | nindent 10 }}
        {{- end }}
  ports:
    - port: 443
      protocol: TCP
{{- end }}

{{/*
The API key of the write endpoints (contracts/auth.py): the Secret named by
apiKey.existingSecret, else the one the chart generates (templates/secrets.yaml).
*/}}
{{- define "vigil.apiKeySecretName" -}}
{{- .Values.apiKey.existingSecret | default (include "vigil.componentName" (dict "root" . "component" "api-key")) }}
{{- end }}

{{/* An env var holding the API key: (dict "root" $ "name" "VIGIL_RAG_API_KEY"). */}}
{{- define "vigil.apiKeyEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "vigil.apiKeySecretName" .root }}
      # contracts.auth.SECRET_KEY
      key: api-key
{{- end }}

{{/* The key of Triton's restricted (admin) APIs: triton.adminKey.existingSecret or the chart's. */}}
{{- define "vigil.tritonAdminSecretName" -}}
{{- .Values.triton.adminKey.existingSecret | default (include "vigil.componentName" (dict "root" . "component" "triton-admin")) }}
{{- end }}

{{/*
A Secret holding one random 40-character token under .key, generated on install:
(dict "root" $ "name" NAME "key" KEY "component" COMPONENT). An upgrade reads the token back
(lookup), so clients keep their key; helm.sh/resource-policy keep leaves the Secret in place on
uninstall, so a reinstall keeps it too. `helm template` has no cluster to look up: each render
draws a new token (GitOps renderers should name an existing Secret instead).
*/}}
{{- define "vigil.generatedTokenSecret" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .name | default dict }}
{{- $token := dig "data" .key "" $existing }}
apiVersion: v1
kind: Secret
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "vigil.componentLabels" (dict "root" .root "component" .component) | nindent 4 }}
  annotations:
    helm.sh/resource-policy: keep
type: Opaque
data:
  {{ .key }}: {{ $token | default (randAlphaNum 40 | b64enc) | quote }}
{{- end }}
