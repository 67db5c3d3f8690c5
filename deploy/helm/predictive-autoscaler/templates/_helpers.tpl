{{/* Names: the release name when it already holds the chart's name, as `helm install predictive-autoscaler` does. */}}
{{- define "pa.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "pa.agentName" -}}
{{- printf "%s-gpu-agent" (include "pa.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pa.tlsSecret" -}}
{{- if eq .Values.tls.mode "secret" -}}
{{- required "tls.secret.name: name the Secret holding tls.crt, tls.key and ca.crt (tls.mode=secret)" .Values.tls.secret.name -}}
{{- else -}}
{{- printf "%s-tls" (include "pa.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "pa.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{- define "pa.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: predictive-autoscaler
{{- end -}}

{{/* app.kubernetes.io/name is also the scrape job (ServiceMonitor jobLabel) the alerts select on. */}}
{{- define "pa.selectorLabels" -}}
app.kubernetes.io/name: predictive-autoscaler
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "pa.agentSelectorLabels" -}}
app.kubernetes.io/name: gpu-agent
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "pa.agentPort" -}}
{{- $parts := splitList ":" .Values.gpuAgent.listen -}}
{{- last $parts -}}
{{- end -}}
