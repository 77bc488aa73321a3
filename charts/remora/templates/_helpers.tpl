{{- define "remora.name" -}}{{ .Release.Name }}{{- end -}}
{{- define "remora.image" -}}{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}{{- end -}}
{{- define "remora.labels" -}}
app.kubernetes.io/name: remora
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}
{{- define "remora.selector" -}}
app.kubernetes.io/name: remora
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "remora.tlsSecret" -}}{{ .Release.Name }}-webhook-tls{{- end -}}
{{- define "remora.storageURL" -}}
{{- if .Values.storage.url -}}
{{ .Values.storage.url }}
{{- else if .Values.storage.volume -}}
file:///var/lib/remora/backups
{{- else -}}
{{- with .Values.storage.s3 -}}
{{- if .bucket -}}
s3://{{ .bucket }}/{{ .prefix }}?{{ if .endpoint }}endpoint={{ .endpoint }}&{{ end }}{{ if .region }}region={{ .region }}&{{ end }}insecure={{ .insecure }}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
