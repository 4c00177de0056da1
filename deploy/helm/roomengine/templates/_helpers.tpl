{{/* The name of the release's objects: <release>-roomengine, or the release name when it already says roomengine. */}}
{{- define "roomengine.fullname" -}}
{{- if contains "roomengine" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-roomengine" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "roomengine.selectorLabels" -}}
app.kubernetes.io/name: roomengine
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "roomengine.labels" -}}
{{ include "roomengine.selectorLabels" . }}
app.kubernetes.io/version: {{ include "roomengine.tag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "roomengine.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion -}}
{{- end -}}

{{/* The Secret the pods read their secret variables from. */}}
{{- define "roomengine.secretName" -}}
{{- .Values.existingSecret | default (include "roomengine.fullname" .) -}}
{{- end -}}

{{/* Nodes: replicaCount in a cluster, one otherwise (the embedded store is one file). */}}
{{- define "roomengine.replicas" -}}
{{- if .Values.cluster.enabled -}}{{ .Values.replicaCount }}{{- else -}}1{{- end -}}
{{- end -}}

{{/* APPSERVER_* variable of a dotted key path: http.publicUrl -> APPSERVER_HTTP_PUBLICURL. */}}
{{- define "roomengine.env" -}}
{{- printf "APPSERVER_%s" (. | replace "." "_" | upper) -}}
{{- end -}}
