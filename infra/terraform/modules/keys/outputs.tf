output "key_arn" {
  description = "The environment's KMS key."
  value       = aws_kms_key.this.arn
}
