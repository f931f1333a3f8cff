{{/* The namespace of the operator's objects (the admission policy names its ServiceAccount there). */}}
{{- define "kube-org.namespace" -}}
{{- .Values.namespace.name -}}
{{- end -}}

{{/* The Secret with the SMTP url, from, username and password. */}}
{{- define "kube-org.smtpSecret" -}}
{{- default "kube-org-smtp" .Values.smtp.existingSecret -}}
{{- end -}}

{{/* The Secret with the OpenID Connect client secret (key client-secret). */}}
{{- define "kube-org.oidcSecret" -}}
{{- default "kube-org-oidc" .Values.oidc.existingSecret -}}
{{- end -}}
