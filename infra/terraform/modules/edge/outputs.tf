output "dns_name" {
  description = "The load balancer's DNS name (point the API's domain at it)."
  value       = aws_lb.this.dns_name
}

output "zone_id" {
  description = "The load balancer's hosted zone, for a Route 53 alias."
  value       = aws_lb.this.zone_id
}

output "idle_timeout_seconds" {
  description = "How long the load balancer keeps an idle connection (the API must keep its longer)."
  value       = aws_lb.this.idle_timeout
}

output "target_group_arn" {
  description = "The API target group."
  value       = aws_lb_target_group.api.arn
}

output "request_count_label" {
  description = "ALB/target group label for request-count autoscaling."
  value       = "${aws_lb.this.arn_suffix}/${aws_lb_target_group.api.arn_suffix}"
}

output "https_listener_arn" {
  description = "The HTTPS listener (the API service depends on it)."
  value       = aws_lb_listener.https.arn
}
