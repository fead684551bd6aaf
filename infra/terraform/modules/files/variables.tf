variable "name" {
  type        = string
  description = "Bucket name (globally unique), e.g. litebase-prod-files-<account id>."
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key that encrypts every object."
}

variable "noncurrent_version_days" {
  type        = number
  description = "Days a deleted or overwritten object's old version is kept before it expires."
  default     = 30
}

variable "force_destroy" {
  type        = bool
  description = "Let `terraform destroy` delete a bucket that still holds files (dev only)."
  default     = false
}

variable "tags" {
  type        = map(string)
  description = "Tags for every resource."
  default     = {}
}
