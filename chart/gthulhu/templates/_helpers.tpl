{{/* Chart name, for app.kubernetes.io/name. */}}
{{- define "gthulhu.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every object name: the release name unless overridden. Cut to 52
characters so "<prefix>-scheduler" stays a valid 63-character name.
*/}}
{{- define "gthulhu.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- end }}

{{- define "gthulhu.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gthulhu.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gthulhu.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: scheduler
{{- end }}

{{- define "gthulhu.labels" -}}
helm.sh/chart: {{ include "gthulhu.chart" . }}
{{ include "gthulhu.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: gthulhu
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "gthulhu.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gthulhu.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Where the config file is mounted, as a directory. */}}
{{- define "gthulhu.configDir" -}}/etc/gthulhu/config{{- end }}
{{- define "gthulhu.apiKeyDir" -}}/etc/gthulhu/api{{- end }}

{{/* The public key is needed when the API client verifies tokens. */}}
{{- define "gthulhu.apiKeyMounted" -}}
{{- if and .Values.api.enabled .Values.api.auth_enabled .Values.api.publicKeySecret.name }}true{{- end }}
{{- end }}

{{/* The config file gthulhu reads, built from the values. */}}
{{- define "gthulhu.config" -}}
{{- $api := dict "enabled" .Values.api.enabled "url" .Values.api.url "interval" .Values.api.interval "auth_enabled" .Values.api.auth_enabled }}
{{- if include "gthulhu.apiKeyMounted" . }}
{{- $_ := set $api "public_key_path" (printf "%s/public.pem" (include "gthulhu.apiKeyDir" .)) }}
{{- end }}
{{- $config := dict "scheduler" .Values.scheduler "strategies" .Values.strategies "api" $api }}
{{- if .Values.metrics.enabled }}
{{- $_ := set $config "metrics" (dict "listen" (printf "0.0.0.0:%d" (int .Values.metrics.port))) }}
{{- end }}
{{- toYaml $config }}
{{- end }}
