{{/* Names, labels and images shared by every template. */}}

{{- define "sc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sc.fullname" -}}
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

{{- define "sc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "sc.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sc.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: service-connect
{{- end }}

{{- define "sc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sc.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sc.operatorImage" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "sc.proxyImage" -}}
{{- printf "%s:%s" .Values.proxy.image.repository (default .Chart.AppVersion .Values.proxy.image.tag) }}
{{- end }}

{{- define "sc.webhookService" -}}
{{- printf "%s-webhook" (include "sc.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sc.webhookSecret" -}}
{{- printf "%s-webhook-tls" (include "sc.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Namespaces the webhooks skip: the release namespace plus webhook.excludeNamespaces. */}}
{{- define "sc.webhookNamespaceSelector" -}}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values:
      {{- range (uniq (prepend .Values.webhook.excludeNamespaces .Release.Namespace)) }}
      - {{ . | quote }}
      {{- end }}
{{- end }}

{{/* The operator's own pods are never sent to its webhook (it could not admit itself while down). */}}
{{- define "sc.webhookObjectSelector" -}}
matchExpressions:
  - key: serviceconnect.dev/control-plane
    operator: DoesNotExist
{{- end }}
