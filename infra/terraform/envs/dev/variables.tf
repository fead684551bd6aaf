variable "region" {
  type        = string
  description = "AWS region."
  default     = "eu-west-1"
}

variable "environment" {
  type        = string
  description = "Environment name, part of every resource name."
  default     = "dev"
}

variable "availability_zones" {
  type        = list(string)
  description = "Two availability zones in the region."
  default     = ["eu-west-1a", "eu-west-1b"]
}

variable "domain_name" {
  type        = string
  description = "The API's domain, e.g. api.dev.example.com (its DNS points at the load balancer)."
}

variable "certificate_arn" {
  type        = string
  description = "ACM certificate covering domain_name, in the same region."
}

variable "image_tag" {
  type        = string
  description = "The image tag to run (pushed to this environment's ECR repository)."
}

variable "openai_api_key_secret_arn" {
  type        = string
  description = "Secrets Manager secret with OPENAI_API_KEY (empty: none)."
  default     = ""
}

variable "app_url" {
  type        = string
  description = "Your app's URL, e.g. https://app.dev.example.com: mails link to its pages."
}

variable "mail_from" {
  type        = string
  description = "The From of every mail, e.g. Acme <no-reply@example.com> (a verified SES identity)."
}

variable "smtp_credentials_secret_arn" {
  type        = string
  description = "Secrets Manager secret with the SES SMTP credentials, JSON {\"username\": …, \"password\": …} (docs/deploy.md)."
}

variable "cors_origins" {
  type        = list(string)
  description = "Browser origins allowed to call the API."
  default     = []
}

variable "settings" {
  type        = map(string)
  description = "Further Litebase settings for every task (names as in .env.example)."
  default     = {}
}
