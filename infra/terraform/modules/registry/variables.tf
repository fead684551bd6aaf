variable "name" {
  type        = string
  description = "Repository name, e.g. litebase."
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key that encrypts the images."
}

variable "keep_images" {
  type        = number
  description = "Tagged images kept; older ones expire."
  default     = 30
}

variable "tags" {
  type        = map(string)
  description = "Tags for every resource."
  default     = {}
}
